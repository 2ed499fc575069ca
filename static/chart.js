// chart.js shows the exact value and time under the pointer on a time
// series: a vertical guide at the nearest point and a tooltip with the
// point's time and each series' value. The server renders the chart (HTML
// labels around one SVG plot, no chart library) and writes what the tooltip
// shows into one attribute of the plot's svg, data-hover (hoverData in
// internal/views/chart.go): lines separated by "\n", fields by "\t":
//
//   top bottom x0 x1 …           plot top and bottom, then each point's x, in the plot's units
//   head \t label0 \t label1 …     the time (or x) of each point; head is a date all share
//   prefix \t unit                  the panel's, once
//   name \t v0 \t v1 …              one line per series: its value at each point ('' for none)
//
// The plot is stretched to its panel (preserveAspectRatio="none"), so its
// units are not pixels: the pointer is mapped into them with the svg's
// screen matrix, and the guide, a line of the plot, keeps its width by the
// stylesheet's non-scaling stroke.
// Values are already formatted as the chart formats them, but for the
// prefix and unit, which this script puts around them as the server does
// (a minus sign before the prefix: -$5). Listeners are on
// document, so a chart that htmx (or the long-poll) swaps in needs no set
// up; while a tooltip shows, a MutationObserver notices when its chart is
// replaced or its data change, and shows the new data under the pointer.
// A chart with hover data takes the focus (tabindex): from the keyboard,
// the arrow keys move along its points (see the end of this file).
// Everything the script adds (the guide line, the tooltip) is this
// viewer's, never part of the shared rendered fragment. ES2017, no inline
// code, so it works under `script-src 'self'`.
(() => {
  'use strict';

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const parsed = new WeakMap(); // svg -> {src, data}
  let tip = null; // the one tooltip element, made on first use
  let current = null; // {svg, src, x, y}: the chart under the pointer
  const observer = new MutationObserver(() => refresh());

  function parse(svg, src) {
    const cached = parsed.get(svg);
    if (cached && cached.src === src) return cached.data;
    const lines = src.split('\n');
    const nums = lines[0].split(' ').map(Number);
    const labels = (lines[1] || '').split('\t');
    const affix = (lines[2] || '').split('\t');
    const data = {
      top: nums[0],
      bottom: nums[1],
      xs: nums.slice(2),
      head: labels[0],
      labels: labels.slice(1),
      prefix: affix[0] || '',
      unit: affix[1] || '',
      series: lines.slice(3).map((l) => {
        const f = l.split('\t');
        return { name: f[0], values: f.slice(1) };
      }),
    };
    parsed.set(svg, { src, data });
    return data;
  }

  // value is v with the panel's prefix and unit, as affix in
  // internal/views/format.go writes it; '–' for no value.
  function value(d, v) {
    if (!v) return '–';
    if (!d.prefix && !d.unit) return v;
    const neg = v[0] === '-';
    return (neg ? '-' : '') + d.prefix + (neg ? v.slice(1) : v) + d.unit;
  }

  // nearest is the index of the x closest to x in the ascending xs.
  function nearest(xs, x) {
    let lo = 0;
    let hi = xs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && x - xs[lo - 1] < xs[lo] - x ? lo - 1 : lo;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; // names come from the database: text, never HTML
    return e;
  }

  function show(svg, clientX, clientY) {
    const src = svg.getAttribute('data-hover');
    const m = svg.getScreenCTM();
    if (!src || !m) return hide();
    const d = parse(svg, src);
    if (d.xs.length === 0) return hide();
    if (current && current.svg !== svg) removeGuide(current.svg);
    if (!current) {
      observer.observe(document.body, {
        subtree: true, childList: true, attributes: true, attributeFilter: ['data-hover'],
      });
    }
    current = { svg, src, x: clientX, y: clientY };

    // The pointer in plot units (the screen matrix holds the stretch).
    const p = new DOMPoint(clientX, clientY).matrixTransform(m.inverse());
    const i = nearest(d.xs, p.x);
    let guide = svg.querySelector('line.guide');
    if (!guide) {
      guide = document.createElementNS(SVG_NS, 'line');
      guide.setAttribute('class', 'guide');
      svg.appendChild(guide);
    }
    guide.setAttribute('x1', d.xs[i]);
    guide.setAttribute('x2', d.xs[i]);
    guide.setAttribute('y1', d.top);
    guide.setAttribute('y2', d.bottom);

    if (!tip) {
      tip = el('div', 'chart-tip');
      tip.setAttribute('role', 'status');
      document.body.appendChild(tip);
    }
    const label = d.labels[i] || '';
    const rows = [el('div', 'tip-x', d.head && label ? d.head + ' ' + label : d.head + label)];
    d.series.forEach((s, k) => {
      const row = el('div', 'tip-s s' + (k % 10));
      row.append(el('i', 'swatch'), el('span', '', s.name), el('b', '', value(d, s.values[i])));
      rows.push(row);
    });
    tip.textContent = '';
    tip.append(...rows);
    tip.hidden = false;
    // Beside the pointer, inside the viewport.
    const w = tip.offsetWidth;
    const h = tip.offsetHeight;
    let left = clientX + 14;
    if (left + w > window.innerWidth - 4) left = Math.max(4, clientX - 14 - w);
    let top = clientY + 14;
    if (top + h > window.innerHeight - 4) top = Math.max(4, clientY - 14 - h);
    tip.style.left = left + 'px';
    tip.style.top = top + 'px';
  }

  function removeGuide(svg) {
    const g = svg.querySelector('line.guide');
    if (g) g.remove();
  }

  function hide() {
    if (!current) return;
    observer.disconnect();
    removeGuide(current.svg);
    current = null;
    if (tip) tip.hidden = true;
  }

  // refresh follows a change of the page under a still pointer: the chart
  // was replaced (swapped, or morphed to new data) and the tooltip shows
  // what is there now.
  function refresh() {
    if (!current) return;
    const { svg, src, x, y } = current;
    if (svg.isConnected && svg.getAttribute('data-hover') === src) return;
    const at = document.elementFromPoint(x, y);
    const next = at && at.closest ? at.closest('svg[data-hover]') : null;
    if (next) show(next, x, y);
    else hide();
  }

  function onPointer(e) {
    const svg = e.target && e.target.closest ? e.target.closest('svg[data-hover]') : null;
    if (svg) show(svg, e.clientX, e.clientY);
    else hide();
  }

  document.addEventListener('pointermove', onPointer, { passive: true });
  document.addEventListener('pointerdown', onPointer, { passive: true });
  // A touch pointer leaves when the finger lifts: the tooltip of a tap
  // stays until the next tap elsewhere (or a scroll).
  document.addEventListener('pointerout', (e) => {
    if (e.pointerType === 'touch') return;
    if (current && !(e.relatedTarget && current.svg.contains(e.relatedTarget))) hide();
  }, { passive: true });
  window.addEventListener('scroll', hide, { passive: true, capture: true });

  // From the keyboard: a focused chart shows its newest point, the arrow
  // keys (and Home, End) move along the points, Escape or leaving the
  // chart hides the tooltip.

  // at is the client position of point i, halfway down the plot.
  function at(svg, d, i) {
    const m = svg.getScreenCTM();
    return m ? new DOMPoint(d.xs[i], (d.top + d.bottom) / 2).matrixTransform(m) : null;
  }

  function showPoint(svg, i) {
    const src = svg.getAttribute('data-hover');
    if (!src) return;
    const d = parse(svg, src);
    if (d.xs.length === 0) return;
    const p = at(svg, d, Math.max(0, Math.min(d.xs.length - 1, i)));
    if (p) show(svg, p.x, p.y);
  }

  document.addEventListener('focusin', (e) => {
    const svg = e.target;
    if (!(svg instanceof SVGSVGElement) || !svg.hasAttribute('data-hover')) return;
    // A click or tap focuses the chart too, and shows the point under the
    // pointer: only a focus from the keyboard shows the newest point.
    if (svg.matches && !svg.matches(':focus-visible')) return;
    showPoint(svg, Infinity);
  });
  document.addEventListener('focusout', (e) => {
    if (current && e.target === current.svg) hide();
  });
  document.addEventListener('keydown', (e) => {
    const svg = e.target;
    if (!(svg instanceof SVGSVGElement) || !svg.hasAttribute('data-hover')) return;
    if (e.key === 'Escape') {
      hide();
      return;
    }
    const d = parse(svg, svg.getAttribute('data-hover') || '');
    if (d.xs.length === 0) return;
    const m = svg.getScreenCTM();
    const here = current && current.svg === svg && m
      ? nearest(d.xs, new DOMPoint(current.x, current.y).matrixTransform(m.inverse()).x)
      : d.xs.length - 1;
    const to = { ArrowLeft: here - 1, ArrowRight: here + 1, Home: 0, End: d.xs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault(); // the page does not scroll under the chart
    showPoint(svg, to);
  });
})();
