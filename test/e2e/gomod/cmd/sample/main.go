// Command sample exercises every package of the module and prints a report.
package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"example.com/dep/ring"
	"example.com/dep/semver"
	"example.com/sample/internal/api"
	"example.com/sample/internal/kv"
	"example.com/sample/internal/render"
	"example.com/sample/internal/shapes"
	"example.com/sample/internal/textstats"
)

const text = `The cache is a map from keys to entries. An entry is stored once and read
many times. Keys are hashes; entries are blobs. The registry keeps the blobs!`

func main() {
	var rows []render.Row
	for _, c := range textstats.Top(text, 3) {
		rows = append(rows, render.Row{Key: "word " + c.Word, Value: fmt.Sprint(c.N)})
	}
	for _, s := range shapes.ByArea([]shapes.Shape{
		shapes.Circle{R: 1}, shapes.Rect{W: 2, H: 3},
		shapes.Polygon{X: []float64{0, 4, 4}, Y: []float64{0, 0, 3}},
	}) {
		rows = append(rows, render.Row{Key: s.Name(), Value: fmt.Sprintf("%.2f", s.Area())})
	}

	store := kv.New()
	srv := httptest.NewServer(api.Handler(store))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/kv/greeting", strings.NewReader("hello"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
	rows = append(rows, render.Row{Key: "http put", Value: resp.Status})
	if _, n, err := store.RoundTrip(); err == nil {
		rows = append(rows, render.Row{Key: "snapshot bytes", Value: fmt.Sprint(n)})
	}

	r := ring.New[int](4)
	for i := 1; i <= 6; i++ {
		r.Push(i * i)
	}
	rows = append(rows, render.Row{Key: "ring sum", Value: fmt.Sprint(ring.Reduce(r, 0, func(a, v int) int { return a + v }))})
	a, _ := semver.Parse("v1.2.3-rc.1")
	b, _ := semver.Parse("1.2.3")
	rows = append(rows, render.Row{Key: a.String() + " vs " + b.String(), Value: fmt.Sprint(semver.Compare(a, b))})

	out, err := render.Text("sample", rows)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(out)
}
