// helm_render renders a Helm chart the way `helm template` does, with the engine Helm itself
// uses: Go's text/template with the sprig functions, plus Helm's own include, tpl, required,
// toYaml and .Files. It exists so that the chart is tested with Debian's packages only.
//
//	helm_render CHART_DIR RELEASE_NAME [VALUES_FILE...]  > rendered.yaml
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

// files is .Files: read access to the chart's own files.
type files struct{ root string }

func (f files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.root, name))
	if err != nil {
		return ""
	}
	return string(b)
}

func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func readYaml(path string) map[string]interface{} {
	b, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &out); err != nil {
		fail("%s: %v", path, err)
	}
	return out
}

// merge copies src over dst, recursing into maps (Helm's coalescing of values files).
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "helm_render: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: helm_render CHART_DIR RELEASE_NAME [VALUES_FILE...]")
	}
	chartDir, release := os.Args[1], os.Args[2]
	chart := readYaml(filepath.Join(chartDir, "Chart.yaml"))
	values := readYaml(filepath.Join(chartDir, "values.yaml"))
	for _, f := range os.Args[3:] {
		merge(values, readYaml(f))
	}
	name := chart["name"].(string)

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYaml
	funcs["include"] = func(tmpl string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, tmpl, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	root.Funcs(funcs).Option("missingkey=zero")

	paths, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	sort.Strings(paths)
	var rendered []string
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			fail("%v", err)
		}
		tname := name + "/templates/" + filepath.Base(p)  // Helm's template names
		if _, err := root.New(tname).Parse(string(text)); err != nil {
			fail("%s: %v", p, err)
		}
		if !strings.HasPrefix(filepath.Base(p), "_") {
			rendered = append(rendered, tname)
		}
	}
	for _, tname := range rendered {
		data := map[string]interface{}{
			"Values":   values,
			"Release":  map[string]interface{}{"Name": release, "Namespace": "default", "Service": "Helm"},
			"Chart":    map[string]interface{}{"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"]},
			"Files":    files{chartDir},
			"Template": map[string]interface{}{"Name": tname, "BasePath": name + "/templates"},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			fail("%v", err)
		}
		if out := strings.TrimSpace(buf.String()); out != "" {
			fmt.Printf("---\n# Source: %s\n%s\n", tname, out)
		}
	}
}
