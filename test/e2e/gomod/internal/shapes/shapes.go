// Package shapes computes areas and perimeters of simple plane figures.
package shapes

import (
	"fmt"
	"math"
	"sort"
)

// Shape is a plane figure.
type Shape interface {
	Area() float64
	Perimeter() float64
	Name() string
}

type Circle struct{ R float64 }
type Rect struct{ W, H float64 }
type Polygon struct{ X, Y []float64 }

func (c Circle) Area() float64      { return math.Pi * c.R * c.R }
func (c Circle) Perimeter() float64 { return 2 * math.Pi * c.R }
func (c Circle) Name() string       { return fmt.Sprintf("circle(r=%g)", c.R) }

func (r Rect) Area() float64      { return r.W * r.H }
func (r Rect) Perimeter() float64 { return 2 * (r.W + r.H) }
func (r Rect) Name() string       { return fmt.Sprintf("rect(%gx%g)", r.W, r.H) }

// Area by the shoelace formula.
func (p Polygon) Area() float64 {
	s := 0.0
	for i := range p.X {
		j := (i + 1) % len(p.X)
		s += p.X[i]*p.Y[j] - p.X[j]*p.Y[i]
	}
	return math.Abs(s) / 2
}

func (p Polygon) Perimeter() float64 {
	s := 0.0
	for i := range p.X {
		j := (i + 1) % len(p.X)
		s += math.Hypot(p.X[j]-p.X[i], p.Y[j]-p.Y[i])
	}
	return s
}

func (p Polygon) Name() string { return fmt.Sprintf("polygon(%d)", len(p.X)) }

// ByArea sorts shapes from the largest area down.
func ByArea(shapes []Shape) []Shape {
	out := append([]Shape(nil), shapes...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Area() > out[j].Area() })
	return out
}
