// Package textstats counts words and finds the most frequent ones.
package textstats

import (
	"regexp"
	"sort"
	"strings"
	"unicode"
)

var wordRE = regexp.MustCompile(`[\p{L}\p{N}']+`)

// Count is one word and how often it appears.
type Count struct {
	Word string
	N    int
}

// Words splits text into lowercase words.
func Words(text string) []string {
	raw := wordRE.FindAllString(text, -1)
	out := make([]string, 0, len(raw))
	for _, w := range raw {
		w = strings.Trim(strings.ToLower(w), "'")
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// Top returns the k most frequent words, ties broken alphabetically.
func Top(text string, k int) []Count {
	freq := map[string]int{}
	for _, w := range Words(text) {
		freq[w]++
	}
	counts := make([]Count, 0, len(freq))
	for w, n := range freq {
		counts = append(counts, Count{w, n})
	}
	sort.Slice(counts, func(i, j int) bool {
		if counts[i].N != counts[j].N {
			return counts[i].N > counts[j].N
		}
		return counts[i].Word < counts[j].Word
	})
	if k < len(counts) {
		counts = counts[:k]
	}
	return counts
}

// Sentences counts sentence-ending punctuation runs.
func Sentences(text string) int {
	n := 0
	prev := false
	for _, r := range text {
		end := r == '.' || r == '!' || r == '?'
		if end && !prev {
			n++
		}
		prev = end || (prev && unicode.IsSpace(r) == false && !unicode.IsLetter(r))
	}
	return n
}
