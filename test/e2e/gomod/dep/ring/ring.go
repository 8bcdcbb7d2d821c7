// Package ring is a fixed-size ring buffer that keeps the most recent values.
package ring

// Buffer holds up to Cap() values; pushing onto a full buffer drops the oldest.
type Buffer[T any] struct {
	items []T
	start int
	n     int
}

// New returns an empty buffer for up to size values (at least one).
func New[T any](size int) *Buffer[T] {
	if size < 1 {
		size = 1
	}
	return &Buffer[T]{items: make([]T, size)}
}

// Cap is the most values the buffer keeps.
func (b *Buffer[T]) Cap() int { return len(b.items) }

// Len is how many values it holds.
func (b *Buffer[T]) Len() int { return b.n }

// Push adds v, dropping the oldest value when full. It reports whether one was dropped.
func (b *Buffer[T]) Push(v T) bool {
	if b.n < len(b.items) {
		b.items[(b.start+b.n)%len(b.items)] = v
		b.n++
		return false
	}
	b.items[b.start] = v
	b.start = (b.start + 1) % len(b.items)
	return true
}

// Values returns the values from oldest to newest.
func (b *Buffer[T]) Values() []T {
	out := make([]T, 0, b.n)
	for i := 0; i < b.n; i++ {
		out = append(out, b.items[(b.start+i)%len(b.items)])
	}
	return out
}

// Reduce folds the values, oldest first.
func Reduce[T, A any](b *Buffer[T], init A, f func(A, T) A) A {
	acc := init
	for _, v := range b.Values() {
		acc = f(acc, v)
	}
	return acc
}
