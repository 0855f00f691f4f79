package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Value is one measured quantity, or the reason there is none.
type Value struct {
	N     float64
	Unit  string // "ms", "s", "req/min", "MB", "" (a count)
	Valid bool
	// Note is shown after a valid value, or alone instead of an invalid one
	// ("not yet implemented", "fails at 193 locks").
	Note string
}

// Millis is a duration shown in milliseconds.
func Millis(d time.Duration) Value {
	return Value{N: float64(d) / float64(time.Millisecond), Unit: "ms", Valid: true}
}

// Seconds is a duration shown in seconds.
func Seconds(d time.Duration) Value {
	return Value{N: d.Seconds(), Unit: "s", Valid: true}
}

// Quantity is a number with a unit.
func Quantity(n float64, unit string) Value { return Value{N: n, Unit: unit, Valid: true} }

// Missing is a value that could not be measured, and why.
func Missing(why string) Value { return Value{Note: why} }

// With returns v with a note.
func (v Value) With(note string) Value { v.Note = note; return v }

func (v Value) String() string {
	if !v.Valid {
		return v.Note
	}
	var s string
	switch {
	case v.Unit == "ms" && v.N < 10:
		s = fmt.Sprintf("%.2f ms", v.N)
	case v.Unit == "ms":
		s = fmt.Sprintf("%.1f ms", v.N)
	case v.Unit == "s":
		s = fmt.Sprintf("%.2f s", v.N)
	case v.Unit == "":
		s = fmt.Sprintf("%.0f", v.N)
	case v.N < 10 && v.N != float64(int64(v.N)):
		s = fmt.Sprintf("%.1f %s", v.N, v.Unit)
	default:
		s = fmt.Sprintf("%.0f %s", v.N, v.Unit)
	}
	if v.Note != "" {
		s += " (" + v.Note + ")"
	}
	return s
}

// Row is one line of the results table: the same measure for consul-elect and
// for api.Lock.
type Row struct {
	Figure  string
	Measure string
	Elect   Value
	Ref     Value
	Goal    string
}

// Ratio is Elect/Ref when both were measured: below 1 consul-elect is
// faster or cheaper (every measure here is better lower).
func (r Row) Ratio() string {
	if !r.Elect.Valid || !r.Ref.Valid || r.Ref.N <= 0 || r.Elect.Unit != r.Ref.Unit {
		return "—"
	}
	ratio := r.Elect.N / r.Ref.N
	switch {
	case ratio < 0.01:
		return fmt.Sprintf("%.4f×", ratio)
	case ratio < 0.1:
		return fmt.Sprintf("%.3f×", ratio)
	}
	return fmt.Sprintf("%.2f×", ratio)
}

// Figure is the outcome of one figure: its rows and the details behind
// them.
type Figure struct {
	Name  string
	Rows  []Row
	Notes []string
	// Err is set when the figure could not complete; the rows measured
	// before it are kept.
	Err error
}

func (f *Figure) notef(format string, args ...any) {
	f.Notes = append(f.Notes, fmt.Sprintf(format, args...))
}

// WriteTable writes the rows of figures as one Markdown table.
func WriteTable(w io.Writer, figures []Figure) {
	fmt.Fprintln(w, "| Figure | Measure | consul-elect | api.Lock | ratio (elect ÷ api.Lock) | Goal |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, f := range figures {
		for _, r := range f.Rows {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, r.Measure, cell(r.Elect), cell(r.Ref), r.Ratio(), r.Goal)
		}
		if f.Err != nil && len(f.Rows) == 0 {
			fmt.Fprintf(w, "| %s | — | error | error | — | |\n", f.Name)
		}
	}
}

func cell(v Value) string { return strings.ReplaceAll(v.String(), "|", "/") }

// WriteNotes writes each figure's details and errors.
func WriteNotes(w io.Writer, figures []Figure) {
	for _, f := range figures {
		if len(f.Notes) == 0 && f.Err == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", f.Name)
		for _, n := range f.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		if f.Err != nil {
			fmt.Fprintf(w, "- ERROR: %v\n", f.Err)
		}
	}
}
