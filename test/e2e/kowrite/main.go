// kowrite writes a KOCACHE bin directory's two files the way ko does after it has
// built a binary's layer (ko's pkg/build/cache.go): it decodes what is there,
// adds one build id, and encodes both maps with an Encoder indented by two
// spaces into files opened O_RDWR|O_CREATE without truncation. The descriptor
// type has go-containerregistry's v1.Descriptor field tags. Used by
// test/e2e/ko_test.sh and bench/ko_bench.sh, since ko itself is not installed.
//
//	kowrite DIR BUILDID DIFFID MEDIATYPE SIZE DIGEST [KEY=VALUE]...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
	Features     []string `json:"features,omitempty"`
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Size        int64             `json:"size"`
	Digest      string            `json:"digest"`
	Data        []byte            `json:"data,omitempty"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

func load(path string, v any) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = json.NewDecoder(f).Decode(v) // an unreadable file starts a new map, as in ko
}

func store(path string, v any) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0755)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func main() {
	if len(os.Args) < 7 {
		fmt.Fprintln(os.Stderr, "usage: kowrite DIR BUILDID DIFFID MEDIATYPE SIZE DIGEST [KEY=VALUE]...")
		os.Exit(2)
	}
	dir, buildID, diffID := os.Args[1], os.Args[2], os.Args[3]
	size, err := strconv.ParseInt(os.Args[5], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	desc := descriptor{MediaType: os.Args[4], Size: size, Digest: os.Args[6]}
	for _, kv := range os.Args[7:] {
		k, v, _ := strings.Cut(kv, "=")
		if desc.Annotations == nil {
			desc.Annotations = map[string]string{}
		}
		desc.Annotations[k] = v
	}
	btod := map[string]string{}
	dtod := map[string]descriptor{}
	load(filepath.Join(dir, "buildid-to-diffid"), &btod)
	load(filepath.Join(dir, "diffid-to-descriptor"), &dtod)
	if btod == nil {
		btod = map[string]string{}
	}
	if dtod == nil {
		dtod = map[string]descriptor{}
	}
	btod[buildID] = diffID
	dtod[diffID] = desc
	if err := store(filepath.Join(dir, "buildid-to-diffid"), btod); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := store(filepath.Join(dir, "diffid-to-descriptor"), dtod); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
