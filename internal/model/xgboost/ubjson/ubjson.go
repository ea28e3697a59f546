// Package ubjson transcodes Universal Binary JSON (ubjson.org, Draft 12), the format of XGBoost's model.ubj,
// into JSON text that encoding/json reads, so one JSON model parser serves both files.
//
// It is written here rather than imported: github.com/jmank88/ubjson sizes slices from a header's count before
// reading the elements (one short header asks for gigabytes) and decodes into Go values instead of transcoding.
package ubjson

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

const (
	// maxDepth bounds the nesting of arrays and objects, as encoding/json does.
	maxDepth = 1000
	// maxExpansion and expansionSlack bound the output to maxExpansion*len(input)+expansionSlack bytes. Real
	// documents expand at most 6 times (a control character in a string becomes \u00XX); only containers
	// whose element type has no payload (null, true, false) can grow further, and the bound stops them.
	maxExpansion   = 8
	expansionSlack = 64
)

// Is reports whether data looks like a UBJSON document rather than JSON text: it starts with '{' followed by
// an integer marker (the length of the first key) or by '$' or '#' (a typed or counted object). A JSON object
// starts with '{' followed by whitespace, '"' or '}', so the two never overlap; "{}" counts as JSON.
func Is(data []byte) bool {
	if len(data) < 2 || data[0] != '{' {
		return false
	}
	switch data[1] {
	case 'i', 'U', 'I', 'l', 'L', '$', '#':
		return true
	}
	return false
}

// ToJSON transcodes a UBJSON document into the equivalent JSON text, so that encoding/json can read it.
//
// Integers keep their exact value; float32 ('d') and float64 ('D') values are written with the fewest digits
// that parse back to the same bits at their own width. NaN, +Inf and -Inf are written as the bare tokens NaN,
// Infinity and -Infinity, which XGBoost's JSON writer also emits but encoding/json refuses. A char ('C') becomes
// a one-character string and a high-precision number ('H') is copied when it is a valid JSON number. Invalid
// UTF-8 in strings and keys is replaced by U+FFFD, as encoding/json does when it reads JSON text. No-ops ('N')
// are skipped wherever a value or key may start.
//
// The error names the offset of the first malformed byte. A length or count larger than the input, a count
// of elements the rest of the input cannot hold, nesting deeper than 1000 containers and JSON longer than 8
// times the input (plus 64 bytes) are refused before the memory for them is taken.
func ToJSON(data []byte) ([]byte, error) {
	out, _, err := transcode(data)
	return out, err
}

// transcode is ToJSON that also reports whether the output holds a non-finite float token.
func transcode(data []byte) ([]byte, bool, error) {
	d := &decoder{
		in:    data,
		out:   make([]byte, 0, 2*len(data)+16),
		limit: maxExpansion*len(data) + expansionSlack,
	}
	if err := d.document(); err != nil {
		return nil, false, err
	}
	return d.out, d.nonFinite, nil
}

// decoder holds the state of one transcoding.
type decoder struct {
	in        []byte
	pos       int
	out       []byte
	limit     int
	depth     int
	nonFinite bool
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("ubjson: offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) document() error {
	m, err := d.marker()
	if err != nil {
		return err
	}
	if err := d.value(m); err != nil {
		return err
	}
	for d.pos < len(d.in) && d.in[d.pos] == 'N' {
		d.pos++
	}
	if d.pos != len(d.in) {
		return d.errorf("data after the end of the document")
	}
	return nil
}

// marker returns the next marker, skipping no-ops.
func (d *decoder) marker() (byte, error) {
	for d.pos < len(d.in) {
		m := d.in[d.pos]
		d.pos++
		if m != 'N' {
			return m, nil
		}
	}
	return 0, d.errorf("unexpected end of input")
}

// take returns the next n bytes.
func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.in)-d.pos {
		return nil, d.errorf("unexpected end of input: %d bytes needed, %d left", n, len(d.in)-d.pos)
	}
	b := d.in[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

// grow checks that the output is still within its bound.
func (d *decoder) grow() error {
	if len(d.out) > d.limit {
		return d.errorf("JSON output exceeds %d times the input size", maxExpansion)
	}
	return nil
}

// integer reads the payload of the integer marker m.
func (d *decoder) integer(m byte) (int64, error) {
	size := payloadSize(m)
	b, err := d.take(size)
	if err != nil {
		return 0, err
	}
	switch m {
	case 'i':
		return int64(int8(b[0])), nil
	case 'U':
		return int64(b[0]), nil
	case 'I':
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 'l':
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	default: // 'L'
		return int64(binary.BigEndian.Uint64(b)), nil
	}
}

// length reads a length or count: an integer marker and its non-negative value, at most the input size.
func (d *decoder) length() (int, error) {
	m, err := d.marker()
	if err != nil {
		return 0, err
	}
	if !isInteger(m) {
		return 0, d.errorf("length must be an integer, found marker %q", m)
	}
	n, err := d.integer(m)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, d.errorf("negative length %d", n)
	}
	if n > int64(len(d.in)) {
		return 0, d.errorf("length %d exceeds the input size %d", n, len(d.in))
	}
	return int(n), nil
}

// value writes the value whose marker m has been read.
func (d *decoder) value(m byte) error {
	switch m {
	case 'Z':
		d.out = append(d.out, "null"...)
	case 'T':
		d.out = append(d.out, "true"...)
	case 'F':
		d.out = append(d.out, "false"...)
	case 'i', 'U', 'I', 'l', 'L':
		n, err := d.integer(m)
		if err != nil {
			return err
		}
		d.out = strconv.AppendInt(d.out, n, 10)
	case 'd':
		b, err := d.take(4)
		if err != nil {
			return err
		}
		d.float(float64(math.Float32frombits(binary.BigEndian.Uint32(b))), 32)
	case 'D':
		b, err := d.take(8)
		if err != nil {
			return err
		}
		d.float(math.Float64frombits(binary.BigEndian.Uint64(b)), 64)
	case 'C':
		b, err := d.take(1)
		if err != nil {
			return err
		}
		if b[0] >= utf8.RuneSelf {
			return d.errorf("char %#x is not ASCII", b[0])
		}
		d.string(b)
	case 'S':
		n, err := d.length()
		if err != nil {
			return err
		}
		b, err := d.take(n)
		if err != nil {
			return err
		}
		d.string(b)
	case 'H':
		n, err := d.length()
		if err != nil {
			return err
		}
		b, err := d.take(n)
		if err != nil {
			return err
		}
		if !isNumber(b) {
			return d.errorf("high-precision number %q is not a JSON number", b)
		}
		d.out = append(d.out, b...)
	case '[':
		return d.container(false)
	case '{':
		return d.container(true)
	default:
		return d.errorf("unknown marker %q", m)
	}
	return d.grow()
}

// float writes f, which holds a value of the given bit size.
func (d *decoder) float(f float64, bitSize int) {
	switch {
	case math.IsNaN(f):
		d.out = append(d.out, "NaN"...)
		d.nonFinite = true
	case math.IsInf(f, 1):
		d.out = append(d.out, "Infinity"...)
		d.nonFinite = true
	case math.IsInf(f, -1):
		d.out = append(d.out, "-Infinity"...)
		d.nonFinite = true
	default:
		d.out = strconv.AppendFloat(d.out, f, 'g', -1, bitSize)
	}
}

// container writes an array or object whose opening marker has been read, in any of its three forms:
// plain (ended by ']' or '}'), counted ('#' and a count) and typed ('$', a marker, '#' and a count).
func (d *decoder) container(object bool) error {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return d.errorf("nesting deeper than %d", maxDepth)
	}
	open, end := byte('['), byte(']')
	if object {
		open, end = '{', '}'
	}
	var typ byte
	if d.pos < len(d.in) && d.in[d.pos] == '$' {
		d.pos++
		b, err := d.take(1)
		if err != nil {
			return err
		}
		typ = b[0]
		if !isValueMarker(typ) {
			return d.errorf("invalid container type %q", typ)
		}
		if d.pos >= len(d.in) || d.in[d.pos] != '#' {
			return d.errorf("typed container without a count")
		}
	}
	count := -1
	if d.pos < len(d.in) && d.in[d.pos] == '#' {
		d.pos++
		n, err := d.length()
		if err != nil {
			return err
		}
		// Every element takes at least min bytes, so a count the rest of the input cannot hold is refused
		// before any element is read.
		elem := 1
		if typ != 0 {
			elem = payloadSize(typ)
		}
		if object {
			elem += 2 // a key: its length marker and one byte of length
		}
		if elem > 0 && n > (len(d.in)-d.pos)/elem {
			return d.errorf("count %d exceeds what the %d bytes left can hold", n, len(d.in)-d.pos)
		}
		count = n
	}
	d.out = append(d.out, open)
	for i := 0; count < 0 || i < count; i++ {
		var m byte
		if count < 0 || typ == 0 || object {
			var err error
			if m, err = d.marker(); err != nil {
				return err
			}
			if count < 0 && m == end {
				break
			}
		}
		if i > 0 {
			d.out = append(d.out, ',')
		}
		if object {
			if err := d.key(m); err != nil {
				return err
			}
			if typ == 0 {
				var err error
				if m, err = d.marker(); err != nil {
					return err
				}
			}
		}
		if typ != 0 {
			m = typ
		}
		if err := d.value(m); err != nil {
			return err
		}
	}
	d.out = append(d.out, end)
	return d.grow()
}

// key writes an object key whose length marker m has been read, and the colon after it.
func (d *decoder) key(m byte) error {
	if !isInteger(m) {
		return d.errorf("object key must start with an integer length, found marker %q", m)
	}
	d.pos--
	n, err := d.length()
	if err != nil {
		return err
	}
	b, err := d.take(n)
	if err != nil {
		return err
	}
	d.string(b)
	d.out = append(d.out, ':')
	return nil
}

const hex = "0123456789abcdef"

// string writes b as a JSON string, replacing invalid UTF-8 by U+FFFD.
func (d *decoder) string(b []byte) {
	d.out = append(d.out, '"')
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				d.out = append(d.out, '\\', c)
			case c == '\n':
				d.out = append(d.out, '\\', 'n')
			case c == '\r':
				d.out = append(d.out, '\\', 'r')
			case c == '\t':
				d.out = append(d.out, '\\', 't')
			case c < 0x20:
				d.out = append(d.out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				d.out = append(d.out, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			d.out = utf8.AppendRune(d.out, utf8.RuneError)
		} else {
			d.out = append(d.out, b[i:i+size]...)
		}
		i += size
	}
	d.out = append(d.out, '"')
}

func isInteger(m byte) bool {
	switch m {
	case 'i', 'U', 'I', 'l', 'L':
		return true
	}
	return false
}

// isValueMarker reports whether m may be the element type of a typed container.
func isValueMarker(m byte) bool {
	switch m {
	case 'Z', 'T', 'F', 'i', 'U', 'I', 'l', 'L', 'd', 'D', 'C', 'S', 'H', '[', '{':
		return true
	}
	return false
}

// payloadSize is the least number of bytes a value of marker m takes after its marker.
func payloadSize(m byte) int {
	switch m {
	case 'Z', 'T', 'F':
		return 0
	case 'i', 'U', 'C', '[', '{':
		return 1
	case 'I', 'S', 'H':
		return 2
	case 'l', 'd':
		return 4
	case 'L', 'D':
		return 8
	}
	return 1
}

// isNumber reports whether b is a number in the JSON grammar (RFC 8259, section 6).
func isNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}
