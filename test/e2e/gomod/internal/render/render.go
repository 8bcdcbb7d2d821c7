// Package render formats reports as text or HTML.
package render

import (
	"bytes"
	htmltemplate "html/template"
	"strings"
	"text/tabwriter"
	"text/template"
)

// Row is one line of a report.
type Row struct {
	Key   string
	Value string
}

var textTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"upper": strings.ToUpper,
}).Parse(`== {{upper .Title}} ==
{{range .Rows}}{{.Key}}	{{.Value}}
{{end}}`))

var htmlTmpl = htmltemplate.Must(htmltemplate.New("report").Parse(
	`<h1>{{.Title}}</h1><table>{{range .Rows}}<tr><td>{{.Key}}</td><td>{{.Value}}</td></tr>{{end}}</table>`))

type report struct {
	Title string
	Rows  []Row
}

// Text renders aligned columns.
func Text(title string, rows []Row) (string, error) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	if err := textTmpl.Execute(tw, report{title, rows}); err != nil {
		return "", err
	}
	if err := tw.Flush(); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// HTML renders an escaped table.
func HTML(title string, rows []Row) (string, error) {
	var buf bytes.Buffer
	err := htmlTmpl.Execute(&buf, report{title, rows})
	return buf.String(), err
}
