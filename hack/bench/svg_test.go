package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// parse checks that doc is well-formed XML and returns its elements, each
// as its name and attributes, and its text.
func parse(t *testing.T, doc []byte) ([]xml.StartElement, string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var elems []xml.StartElement
	var text strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return elems, text.String()
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			elems = append(elems, tok.Copy())
		case xml.CharData:
			text.Write(tok)
			text.WriteByte('\n')
		}
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestLineChartIsSVGWithAxesAndOneLinePerSeries(t *testing.T) {
	c := chart{
		title: "issued <over> time & more", xLabel: "seconds", yLabel: "certificates",
		series: []series{
			{name: "csr-agent", points: []point{{0, 0}, {1.5, 400}, {3.2, 1000}}},
			{name: "KCM \"QPS 20\"", points: []point{{0, 0}, {50, 1000}}},
		},
	}
	elems, text := parse(t, c.svg())
	if elems[0].Name.Local != "svg" || attr(elems[0], "viewBox") == "" {
		t.Fatalf("root is %v", elems[0])
	}
	var lines, axes int
	names := map[string]bool{}
	for _, e := range elems {
		switch {
		case e.Name.Local == "polyline":
			lines++
			if n := len(strings.Fields(attr(e, "points"))); n < 2 {
				t.Errorf("a line of %d points", n)
			}
		case e.Name.Local == "g" && attr(e, "class") == "axis":
			axes++
		case e.Name.Local == "g" && attr(e, "class") == "series":
			names[attr(e, "data-name")] = true
		}
	}
	if lines != 2 || axes != 1 || !names["csr-agent"] || !names[`KCM "QPS 20"`] {
		t.Errorf("%d lines, %d axes, series %v", lines, axes, names)
	}
	for _, want := range []string{"issued <over> time & more", "seconds", "certificates", "1000", "50"} {
		if !strings.Contains(text, want) {
			t.Errorf("text does not hold %q:\n%s", want, text)
		}
	}
}

func TestBarChartDrawsOneBarPerPoint(t *testing.T) {
	c := chart{title: "per minute", bars: true, barWidth: 1, series: []series{{name: "renewals", points: []point{{0, 3}, {1, 5}, {2, 0}}}}}
	elems, _ := parse(t, c.svg())
	bars := 0
	inSeries := false
	for _, e := range elems {
		if e.Name.Local == "g" {
			inSeries = attr(e, "class") == "series"
		}
		if inSeries && e.Name.Local == "rect" && attr(e, "width") != "12" { // the legend swatch is 12 wide
			bars++
		}
	}
	if bars != 3 {
		t.Errorf("%d bars, want 3", bars)
	}
}

func TestEmptyChartStillHasAxes(t *testing.T) {
	elems, _ := parse(t, chart{title: "nothing"}.svg())
	for _, e := range elems {
		if e.Name.Local == "g" && attr(e, "class") == "axis" {
			return
		}
	}
	t.Error("no axis")
}

func TestTicksAreRoundAndCoverTheSpan(t *testing.T) {
	for _, span := range []float64{1000, 47, 0.3, 0, 12.9, 288} {
		ticks, top := niceTicks(span)
		step := ticks[1] - ticks[0]
		mantissa := step / math.Pow(10, math.Floor(math.Log10(step)))
		round := math.Abs(mantissa-1) < 1e-9 || math.Abs(mantissa-2) < 1e-9 || math.Abs(mantissa-5) < 1e-9
		if ticks[0] != 0 || top < span || len(ticks) < 3 || len(ticks) > 11 || !round || math.Abs(ticks[len(ticks)-1]-top) > step/1e6 {
			t.Errorf("niceTicks(%v) = %v, %v", span, ticks, top)
		}
	}
}
