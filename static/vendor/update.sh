#!/bin/sh
# update.sh re-fetches the vendored htmx files with `npm pack`, verifies the
# tarball's sha512 integrity and each file's sha256, and only then copies them
# into this folder. Any mismatch stops with a non-zero exit and changes nothing.
set -eu

PACKAGE=htmx.org
VERSION=4.0.1
INTEGRITY='sha512-oF7JgXhDW9UXCy/k1ZYFUQgzu/rm19ORWPSPNL91vPluB2PB9+MV55tyQdH/w7o2EAbTYUG5SDW1R60mdkdqGg=='

# destination  source-in-tarball  sha256
FILES='
htmx.min.js    package/dist/htmx.min.js         a0abb04f2f45a1f89d1d4844023245537e5e6014c87b144553e0607b4cc32130
hx-sse.min.js  package/dist/ext/hx-sse.min.js   18ef2761356ec1fe0bb6d92612315b37517a7c1e9856b661c5ae81fef239d103
htmx.LICENSE   package/LICENSE                  d3d2456f76414f2456104660ebd65aff1c04cd7966b942bdabd63f3cdb316a38
'

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "$PACKAGE@$VERSION" >/dev/null
tgz="$PACKAGE-$VERSION.tgz"
[ -f "$tgz" ] || { echo "update.sh: npm pack did not produce $tgz" >&2; exit 1; }

got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 | tr -d '\n')"
if [ "$got" != "$INTEGRITY" ]; then
	echo "update.sh: $tgz integrity mismatch: got $got, want $INTEGRITY" >&2
	exit 1
fi
tar -xzf "$tgz"

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

status=0
echo "$FILES" | while read -r dst src want; do
	[ -n "$dst" ] || continue
	got=$(sha256 "$src")
	if [ "$got" != "$want" ]; then
		echo "update.sh: $src sha256 mismatch: got $got, want $want" >&2
		exit 1
	fi
done || status=1
[ "$status" -eq 0 ] || exit 1

echo "$FILES" | while read -r dst src want; do
	[ -n "$dst" ] || continue
	cp "$src" "$here/$dst"
	echo "ok  $dst  $want"
done
