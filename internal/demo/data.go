package demo

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// The vocabulary of the demo data. Slices, not maps, so that generation is
// deterministic for a given random source.

type product struct {
	name  string
	cents int64 // list price
}

var products = []product{
	{"Headset", 12900},
	{"Keyboard", 8900},
	{"Laptop stand", 5900},
	{"Monitor", 32900},
	{"Mouse", 3900},
	{"USB-C dock", 18900},
	{"Webcam", 9900},
}

// productWeights make cheap items sell more often than expensive ones.
var productWeights = []float64{14, 18, 10, 6, 24, 8, 12}

var regions = []string{"North America", "Europe", "Asia Pacific", "Latin America"}

var regionWeights = []float64{40, 30, 20, 10}

var customers = []string{
	"Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries",
	"Wayne Enterprises", "Wonka", "Tyrell", "Cyberdyne", "Soylent", "Vandelay Industries",
	"Pied Piper", "Massive Dynamic", "Aperture Labs", "Oscorp", "Monarch", "Dunder Mifflin",
	"Bluth Company", "Prestige Worldwide", "Sterling Cooper", "Nakatomi", "Wernham Hogg",
	"Los Pollos Hermanos", "Planet Express", "Paper Street", "Krusty Krab", "Gringotts",
	"Blue Sun", "Weyland-Yutani",
}

// customerWeights follow a Zipf-like curve, so a few customers lead the
// top-customers table and the rest form a long tail.
var customerWeights = func() []float64 {
	w := make([]float64, len(customers))
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), 0.8)
	}
	return w
}()

// Ticket priorities, most urgent first; the bar panel shows them in this
// order.
var priorities = []string{"urgent", "high", "normal", "low"}

var priorityWeights = []float64{7, 18, 45, 30}

// priorityCloseWeight is the weight of each priority in the random order
// in which Traffic picks tickets to close (the smallest random() * weight
// first), so urgent tickets are the likeliest to be closed; the SQL in
// generator.step spells the same numbers.
var priorityCloseWeight = []float64{0.25, 0.5, 0.8, 1}

var subjects = []string{
	"Cannot log in", "Invoice shows the wrong amount", "Dock not detected on macOS",
	"Refund request", "Shipping delayed", "Keyboard missing keys",
	"Password reset email not received", "API rate limit question", "Monitor flickers",
	"Change billing address", "Order stuck in pending", "Headset microphone too quiet",
	"Bulk discount inquiry", "Damaged on arrival", "Warranty claim",
}

var services = []string{"api", "auth", "billing", "checkout", "notifications", "search", "web", "worker"}

var environments = []string{"production", "staging", "canary"}

var environmentWeights = []float64{50, 35, 15}

var authors = []string{"alice", "bob", "chen", "dana", "emeka", "farah", "gus", "hiro"}

// sensor is one room sensor; its readings follow a slow wave around a base
// value with a little noise, so the charts show lines, not static.
type sensor struct {
	name          string
	temp, tAmp    float64 // °C
	hum, hAmp     float64 // % relative humidity
	period        time.Duration
	phase, phase2 float64
}

var sensors = []sensor{
	{"lab", 19.5, 1.2, 48, 6, 17 * time.Minute, 0.3, 1.1},
	{"loading-dock", 13.0, 2.0, 62, 8, 23 * time.Minute, 2.1, 0.4},
	{"office-2f", 21.5, 0.8, 41, 4, 19 * time.Minute, 4.0, 2.5},
	{"server-room-a", 23.0, 1.5, 35, 3, 13 * time.Minute, 1.0, 3.3},
	{"server-room-b", 24.5, 1.0, 33, 3, 21 * time.Minute, 5.2, 0.9},
	{"warehouse", 16.5, 1.8, 55, 7, 27 * time.Minute, 3.3, 5.0},
}

// pick returns an index into weights, chosen in proportion to the weights.
func pick(r *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// order is one row of demo.orders; At is unused when the database sets
// created_at.
type order struct {
	At       time.Time
	Customer string
	Region   string
	Product  string
	Quantity int32
	Cents    int64
	Status   string
}

func newOrder(r *rand.Rand) order {
	p := products[pick(r, productWeights)]
	qty := int32(1)
	switch x := r.Float64(); {
	case x < 0.08:
		qty = 3 + r.Int32N(8) // a team order
	case x < 0.25:
		qty = 2
	}
	cents := p.cents * int64(qty)
	if qty >= 3 {
		cents = cents * 90 / 100 // volume discount
	}
	return order{
		Customer: customers[pick(r, customerWeights)],
		Region:   regions[pick(r, regionWeights)],
		Product:  p.name,
		Quantity: qty,
		Cents:    cents,
		Status:   "pending",
	}
}

// seededOrderStatus is the status an order placed age ago has by now,
// following the steps Traffic takes: pending for 10 s, then paid (3% fail),
// shipped after a minute; Traffic's refund writes refund shipped orders
// between 1 and 10 minutes old, refundShare/orderShare of all orders.
func seededOrderStatus(r *rand.Rand, age time.Duration) string {
	x := r.Float64()
	switch {
	case age < 10*time.Second:
		return "pending"
	case x < 0.03:
		return "failed"
	case age < time.Minute:
		return "paid"
	case x < 0.03+refundShare/orderShare:
		return "refunded"
	default:
		return "shipped"
	}
}

// ticket is one row of demo.tickets; Closed is zero while open.
type ticket struct {
	Opened   time.Time
	Closed   time.Time
	Priority string
	Subject  string
	Customer string
}

func newTicket(r *rand.Rand, opened time.Time) ticket {
	return ticket{
		Opened:   opened,
		Priority: priorities[pick(r, priorityWeights)],
		Subject:  subjects[r.IntN(len(subjects))],
		Customer: customers[pick(r, customerWeights)],
	}
}

// deploy is one row of demo.deploys.
type deploy struct {
	At          time.Time
	Service     string
	Version     string
	Environment string
	Status      string
	Author      string
}

func newDeploy(r *rand.Rand, at time.Time) deploy {
	return deploy{
		At:          at,
		Service:     services[r.IntN(len(services))],
		Version:     versionAt(at),
		Environment: environments[pick(r, environmentWeights)],
		Status:      "running",
		Author:      authors[r.IntN(len(authors))],
	}
}

// versionAt names a build by its time, so versions only ever go up.
func versionAt(t time.Time) string {
	t = t.UTC()
	return "v2." + strconv.Itoa(t.YearDay()) + "." + strconv.Itoa(t.Hour()*60+t.Minute())
}

// deployOutcome is how a finished deploy ended.
func deployOutcome(r *rand.Rand) string {
	switch x := r.Float64(); {
	case x < 0.10:
		return "failed"
	case x < 0.15:
		return "rolled back"
	default:
		return "succeeded"
	}
}

// reading is one row of demo.sensor_readings.
type reading struct {
	At          time.Time
	Sensor      string
	Temperature float64
	Humidity    float64
}

func (s sensor) read(r *rand.Rand, t time.Time) reading {
	x := float64(t.UnixNano()) / float64(s.period)
	temp := s.temp + s.tAmp*math.Sin(2*math.Pi*x+s.phase) + r.NormFloat64()*0.12
	hum := s.hum + s.hAmp*math.Sin(2*math.Pi*x/1.3+s.phase2) + r.NormFloat64()*0.4
	return reading{
		At:          t,
		Sensor:      s.name,
		Temperature: math.Round(temp*100) / 100,
		Humidity:    math.Round(min(max(hum, 0), 100)*100) / 100,
	}
}
