package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
)

// The bench draws its charts itself, in SVG, with the standard library: a
// plotting library (gonum/plot and the like) would add a large dependency
// tree to the module for three kinds of picture, and its output (fonts,
// generated ids) would change with its version, so a rerun would rewrite
// charts whose data did not change. These few functions are deterministic.

// chart is a chart of one or more series over a shared x axis.
type chart struct {
	title          string
	xLabel, yLabel string
	series         []series
	// bars draws each series as bars of width barWidth (in x units) from
	// zero, for counts per interval; otherwise each series is a line.
	bars     bool
	barWidth float64
}

type series struct {
	name   string
	points []point
}

type point struct{ x, y float64 }

// The canvas and the plot area inside it, in SVG user units.
const (
	svgWidth, svgHeight         = 720, 360
	plotLeft, plotRight         = 70, 700
	plotTop, plotBottom         = 40, 300
	svgPlotWidth, svgPlotHeight = plotRight - plotLeft, plotBottom - plotTop
	legendTop                   = 48
	svgTicks                    = 5
	svgFont                     = `font-family="sans-serif" font-size="12"`
)

// colors of the series, in order; chosen to stay apart for colour-blind
// readers (Okabe–Ito).
var colors = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"}

// svg renders c. Empty series draw nothing; a chart without points still
// has its axes.
func (c chart) svg() []byte {
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range c.series {
		for _, p := range s.points {
			xmin, xmax, ymax = math.Min(xmin, p.x), math.Max(xmax, p.x+c.barWidthOr0()), math.Max(ymax, p.y)
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 0, 1
	}
	xmin = math.Min(xmin, 0)
	xTicks, xmax := niceTicks(xmax - xmin)
	yTicks, ymax := niceTicks(ymax)
	sx := func(x float64) float64 { return plotLeft + (x-xmin)/(xmax-xmin)*svgPlotWidth }
	sy := func(y float64) float64 { return plotBottom - y/ymax*svgPlotHeight }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight, svgFont)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, svgHeight)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", plotLeft, esc(c.title))
	b.WriteString(`<g class="axis">` + "\n")
	for _, t := range yTicks {
		y := sy(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#ddd"/>`+"\n", plotLeft, f(y), plotRight, f(y))
		fmt.Fprintf(&b, `<text x="%d" y="%s" text-anchor="end">%s</text>`+"\n", plotLeft-6, f(y+4), num(t))
	}
	for _, t := range xTicks {
		x := sx(xmin + t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#333"/>`+"\n", f(x), plotBottom, f(x), plotBottom+5)
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`+"\n", f(x), plotBottom+19, num(xmin+t))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", plotLeft, plotBottom, plotRight, plotBottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", plotLeft, plotTop, plotLeft, plotBottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (plotLeft+plotRight)/2, svgHeight-16, esc(c.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (plotTop+plotBottom)/2, esc(c.yLabel))
	b.WriteString("</g>\n")

	for i, s := range c.series {
		color := colors[i%len(colors)]
		fmt.Fprintf(&b, `<g class="series" data-name="%s">`+"\n", esc(s.name))
		if c.bars {
			w := math.Max(sx(xmin+c.barWidth)-sx(xmin), 1)
			for _, p := range s.points {
				fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>`+"\n",
					f(sx(p.x)), f(sy(p.y)), f(w), f(plotBottom-sy(p.y)), color)
			}
		} else if len(s.points) > 0 {
			b.WriteString(`<polyline fill="none" stroke="` + color + `" stroke-width="2" points="`)
			for j, p := range s.points {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(f(sx(p.x)) + "," + f(sy(p.y)))
			}
			b.WriteString("\"/>\n")
		}
		y := legendTop + 18*i
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", plotLeft+12, y, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", plotLeft+30, y+10, esc(s.name))
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func (c chart) barWidthOr0() float64 {
	if c.bars {
		return c.barWidth
	}
	return 0
}

// niceTicks returns about svgTicks tick offsets from 0 up to a round
// maximum of at least span (1, 2 or 5 times a power of ten apart), and
// that maximum.
func niceTicks(span float64) ([]float64, float64) {
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		span = 1
	}
	raw := span / svgTicks
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step := pow * 10
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	top := math.Ceil(span/step) * step
	var ticks []float64
	for i := 0.0; i*step <= top+step/1e9; i++ {
		ticks = append(ticks, i*step)
	}
	return ticks, top
}

// f formats a coordinate with one decimal: enough for a 720-unit canvas,
// and stable output.
func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// num formats a tick label without trailing zeros.
func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // writes to a buffer: cannot fail
	return b.String()
}
