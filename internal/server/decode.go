package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// predictRequest is the body of POST /predict.
type predictRequest struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	Inputs       rows   `json:"inputs"`
}

// rows is the "inputs" of a /predict request: a list of rows of values, or a
// single row. A value is a number, null (a missing value, NaN), or a string:
// a category name, which only the model can turn into its code.
type rows struct {
	present bool
	values  []float64
	// names holds the strings of the rows in the order they came, each with
	// the index in values it stands for (where values holds NaN until
	// the model's categories resolve it); nil for rows of numbers. It is a
	// pointer so that rows of numbers, the common request, carry one word
	// for it, not three.
	names *[]cellName
	n     int // rows seen, counting past maxRows
	cols  int // length of the first row
	// ragged is the index of the first row whose length differs from the
	// first row's, or -1; raggedLen is its length.
	ragged, raggedLen int
	// maxRows bounds what is stored: rows past it are checked for syntax and
	// counted, not kept.
	maxRows int
	// maxValues, when not 0, bounds the values of the whole batch: more is
	// refused at once (batch_too_large), so that one wide row cannot make
	// the decoder hold millions of values.
	maxValues int
	// stop is set once the batch is known to be refused (ragged rows):
	// values are then checked, not kept.
	stop bool
}

// stringCells returns the strings of the rows, with where they stand.
func (r *rows) stringCells() []cellName {
	if r.names == nil {
		return nil
	}
	return *r.names
}

// cellName is a string given for one value of the rows.
type cellName struct {
	at   int
	name string
}

// decodeError is a request the decoder cannot read.
type decodeError struct {
	typ errorType
	msg string
}

func (e *decodeError) Error() string { return e.msg }

// decodePredict reads a /predict body into req. It returns an *apiError of
// type invalid_json (not JSON) or invalid_request (JSON of the wrong shape).
func decodePredict(body []byte, req *predictRequest) *apiError {
	// The common request (valid JSON, known fields, no escapes in the names)
	// takes a fast path without reflection; anything else takes encoding/json,
	// which also words the errors.
	if json.Valid(body) {
		fresh := *req
		if aerr, ok := fastDecodePredict(body, req); ok {
			return aerr
		}
		*req = fresh
	}
	return slowDecodePredict(body, req)
}

// slowDecodePredict decodes any body with encoding/json.
func slowDecodePredict(body []byte, req *predictRequest) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(req)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return newError(errInvalidJSON, "invalid JSON: data after the request object")
		}
		if !req.Inputs.present {
			return newError(errInvalidRequest, `the request has no "inputs": send {"inputs": [[feature values...], ...]}`)
		}
		return nil
	}
	var de *decodeError
	if errors.As(err, &de) {
		return newError(de.typ, "%s", de.msg)
	}
	aerr := jsonError(err, body)
	if strings.HasPrefix(aerr.msg, "invalid JSON") && strings.Contains(aerr.msg, "NaN and Infinity") {
		aerr.msg += "; send null for a missing value"
	}
	return aerr
}

// fastDecodePredict decodes a valid JSON body of the usual shape. It reports
// ok=false for anything it leaves to encoding/json: another top-level type,
// unknown or escaped keys, names that are not plain strings.
func fastDecodePredict(body []byte, req *predictRequest) (*apiError, bool) {
	p := scanner{b: body}
	p.space()
	if !p.consume('{') {
		return nil, false
	}
	for {
		p.space()
		if p.consume('}') {
			break
		}
		key, ok := p.plainString()
		if !ok {
			return nil, false
		}
		p.space()
		p.consume(':')
		p.space()
		switch key {
		case "model_name", "model_version":
			v, ok := p.plainString()
			if !ok {
				return nil, false
			}
			if key == "model_name" {
				req.ModelName = v
			} else {
				req.ModelVersion = v
			}
		case "inputs":
			start := p.i
			p.skipValue()
			if err := req.Inputs.UnmarshalJSON(body[start:p.i]); err != nil {
				var de *decodeError
				if errors.As(err, &de) {
					return newError(de.typ, "%s", de.msg), true
				}
				return nil, false
			}
		default:
			return nil, false
		}
		p.space()
		p.consume(',')
	}
	p.space()
	if p.i != len(body) {
		return nil, false
	}
	if !req.Inputs.present {
		return newError(errInvalidRequest, `the request has no "inputs": send {"inputs": [[feature values...], ...]}`), true
	}
	return nil, true
}

// jsonError describes a body the JSON decoder rejected.
func jsonError(err error, body []byte) *apiError {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		de  *decodeError
	)
	switch {
	case errors.As(err, &de):
		return newError(de.typ, "%s", de.msg)
	case errors.Is(err, io.EOF):
		return newError(errInvalidJSON, "invalid JSON: the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(errInvalidJSON, "invalid JSON: the body ends before the JSON does")
	case errors.As(err, &syn):
		if nonFiniteLiteral(body, syn.Offset) {
			return newError(errInvalidJSON, "invalid JSON at byte %d: NaN and Infinity are not JSON numbers", syn.Offset)
		}
		return newError(errInvalidJSON, "invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return newError(errInvalidRequest, "the request must be a JSON object, not %s", typ.Value)
		}
		return newError(errInvalidRequest, "%q must be a %s, not %s", typ.Field, typ.Type, typ.Value)
	}
	// Unknown fields; the message names the field.
	return newError(errInvalidRequest, "%s", trimJSONPrefix(err.Error()))
}

func trimJSONPrefix(s string) string {
	if len(s) > 6 && s[:6] == "json: " {
		return s[6:]
	}
	return s
}

// nonFiniteLiteral reports whether the syntax error at offset is a NaN or
// Infinity literal, which Python's json module writes by default.
func nonFiniteLiteral(body []byte, offset int64) bool {
	i := int(offset) - 1
	if i < 0 || i >= len(body) {
		return false
	}
	rest := body[i:]
	if body[i] == '-' && len(rest) > 1 {
		rest = rest[1:]
	}
	return bytes.HasPrefix(rest, []byte("NaN")) || bytes.HasPrefix(rest, []byte("Inf"))
}

// UnmarshalJSON reads the inputs. b is one valid JSON value: the JSON
// decoder has already checked the syntax of the whole body.
func (r *rows) UnmarshalJSON(b []byte) error {
	// A repeated "inputs" key replaces the earlier one, as encoding/json
	// does with any field: start afresh, keeping only the limits.
	*r = rows{values: r.values[:0], maxRows: r.maxRows, maxValues: r.maxValues}
	if r.values == nil {
		// A number takes at least two bytes with its comma: one allocation
		// holds them all.
		n := min(len(b)/2+1, 1<<16)
		if r.maxValues > 0 {
			n = min(n, r.maxValues)
		}
		r.values = make([]float64, 0, n)
	}
	p := scanner{b: b}
	p.space()
	if p.literal("null") {
		return nil
	}
	r.present = true
	r.ragged = -1
	if !p.consume('[') {
		return p.typeError("inputs", "a list of rows")
	}
	p.space()
	if p.consume(']') {
		return nil
	}
	if c := p.peek(); c != '[' {
		// A flat list of values is one row.
		if err := r.row(&p, -1); err != nil {
			return err
		}
		r.n = 1
		return nil
	}
	for i := 0; ; i++ {
		p.space()
		if !p.consume('[') {
			return p.typeError(fmt.Sprintf("inputs[%d]", i), "a list of numbers")
		}
		if err := r.row(&p, i); err != nil {
			return err
		}
		r.n++
		p.space()
		if p.consume(']') {
			return nil
		}
		p.consume(',')
	}
}

// row reads the values of row i (-1 for a flat single row) up to and
// including its closing bracket.
func (r *rows) row(p *scanner, i int) error {
	keep := r.n < r.maxRows && !r.stop
	count := 0
	p.space()
	if !p.consume(']') {
		for {
			p.space()
			v, ok := p.number()
			var name string
			isName := false
			if !ok {
				// A string is a category name; one that is not kept is
				// only skipped.
				switch {
				case keep:
					name, isName = p.string()
				case p.peek() == '"':
					p.skipValue()
					isName = true
				}
				if !isName {
					where := fmt.Sprintf("inputs[%d][%d]", i, count)
					if i < 0 {
						where = fmt.Sprintf("inputs[%d]", count)
					}
					return p.typeError(where, "a number, a string or null")
				}
			}
			if keep {
				if r.maxValues > 0 && len(r.values) == r.maxValues {
					return &decodeError{typ: errBatchTooLarge, msg: fmt.Sprintf(
						"inputs hold more than %d values, the most that %d rows (--max-batch-rows) of the widest loaded model (%d features) take",
						r.maxValues, r.maxRows, r.maxValues/max(1, r.maxRows))}
				}
				if isName {
					if r.names == nil {
						r.names = new([]cellName)
					}
					*r.names = append(*r.names, cellName{at: len(r.values), name: name})
					v = math.NaN()
				}
				r.values = append(r.values, v)
			}
			count++
			p.space()
			if p.consume(']') {
				break
			}
			p.consume(',')
		}
	}
	switch {
	case r.n == 0:
		r.cols = count
	case count != r.cols && r.ragged < 0:
		r.ragged, r.raggedLen = i, count
	}
	if r.ragged >= 0 {
		// A ragged batch is rejected; stop keeping values.
		r.stop = true
	}
	return nil
}

// scanner walks a JSON value that is known to be syntactically valid.
type scanner struct {
	b []byte
	i int
}

func (p *scanner) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *scanner) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *scanner) consume(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

func (p *scanner) literal(s string) bool {
	if bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

// number reads a number, or null as NaN. A number too large for a float64
// reads as ±Inf, which validation rejects.
func (p *scanner) number() (float64, bool) {
	if p.literal("null") {
		return math.NaN(), true
	}
	tok, ok := p.token()
	if !ok {
		return 0, false
	}
	// The bytes are not modified while ParseFloat runs, and it keeps no
	// reference to them.
	v, err := strconv.ParseFloat(unsafe.String(&tok[0], len(tok)), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	return v, true
}

// plainString reads a string without escapes or invalid UTF-8 (which
// encoding/json replaces with U+FFFD); ok is false for anything else.
func (p *scanner) plainString() (string, bool) {
	if !p.consume('"') {
		return "", false
	}
	start, ascii := p.i, true
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			if !ascii && !utf8.Valid(p.b[start:p.i]) {
				return "", false
			}
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return "", false
}

// string reads a string, with its escapes decoded as encoding/json decodes
// them (invalid UTF-8 becomes U+FFFD); ok is false for anything else.
func (p *scanner) string() (string, bool) {
	start := p.i
	if s, ok := p.plainString(); ok {
		return s, true
	}
	p.i = start
	if p.peek() != '"' {
		return "", false
	}
	p.skipValue()
	var s string
	if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
		p.i = start
		return "", false
	}
	return s, true
}

// skipValue moves past one JSON value, which must be valid.
func (p *scanner) skipValue() {
	depth := 0
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			for p.i < len(p.b) && p.b[p.i] != '"' {
				if p.b[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			if depth == 0 {
				return
			}
			depth--
		case depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r'):
			return
		}
		p.i++
		if depth == 0 && (c == ']' || c == '}' || c == '"') {
			return
		}
	}
}

// token reads a number token without converting it.
func (p *scanner) token() ([]byte, bool) {
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			p.i++
			continue
		}
		break
	}
	return p.b[start:p.i], p.i > start
}

// typeError describes the JSON value at the scanner's position.
func (p *scanner) typeError(where, want string) error {
	got := "something else"
	switch c := p.peek(); {
	case c == '"':
		got = "a string"
	case c == '{':
		got = "an object"
	case c == '[':
		got = "a list"
	case c == 't' || c == 'f':
		got = "a boolean"
	case c == 'n':
		got = "null"
	case c == '-' || c >= '0' && c <= '9':
		got = "a number"
	}
	return &decodeError{typ: errInvalidRequest, msg: fmt.Sprintf("%s must be %s, not %s", where, want, got)}
}
