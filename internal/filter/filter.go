// Package filter is Rampart's one expression language, used for dynamic groups, device
// listings, and later rollout targets and detection rules.
//
// Expressions are CEL (https://cel.dev): type-checked against the variables a Schema
// declares, with a size limit on the source and a cost limit on evaluation so a user's
// expression can neither crash nor stall the server. It is not a query planner: expressions
// are evaluated in memory over records a store already returned.
package filter

import (
	"errors"
	"fmt"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/rampart-iot/rampart"
)

// MaxSourceLen bounds an expression's source text.
const MaxSourceLen = 4096

// costLimit bounds the work of one evaluation (CEL's abstract cost units).
const costLimit = 100_000

// Type is the type of a variable.
type Type int

// The variable types an expression can see.
const (
	String Type = iota
	Int
	Bool
	Time
	StringList
	StringMap
)

// Var declares one variable.
type Var struct {
	Name string
	Type Type
	Doc  string
}

// Schema is the set of variables expressions of one kind may use.
type Schema struct {
	env  *cel.Env
	vars []Var
}

// NewSchema builds a schema; it fails only on a programming error in vars.
func NewSchema(vars ...Var) (*Schema, error) {
	opts := make([]cel.EnvOption, 0, len(vars))
	for _, v := range vars {
		var t *cel.Type
		switch v.Type {
		case String:
			t = cel.StringType
		case Int:
			t = cel.IntType
		case Bool:
			t = cel.BoolType
		case Time:
			t = cel.TimestampType
		case StringList:
			t = cel.ListType(cel.StringType)
		case StringMap:
			t = cel.MapType(cel.StringType, cel.StringType)
		default:
			return nil, fmt.Errorf("filter schema: variable %s has unknown type %d", v.Name, v.Type)
		}
		opts = append(opts, cel.Variable(v.Name, t))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("filter schema: %w", err)
	}
	return &Schema{env: env, vars: vars}, nil
}

// Vars lists the schema's variables, for documentation and error messages.
func (s *Schema) Vars() []Var { return s.vars }

// Expr is a compiled, type-checked boolean expression.
type Expr struct {
	src string
	prg cel.Program
}

// Compile parses and type-checks src. Errors wrap rampart.ErrInvalid and say where the
// expression is wrong.
func (s *Schema) Compile(src string) (*Expr, error) {
	if len(src) > MaxSourceLen {
		return nil, fmt.Errorf("filter is longer than %d bytes: %w", MaxSourceLen, rampart.ErrInvalid)
	}
	if src == "" {
		return nil, fmt.Errorf("filter is empty: %w", rampart.ErrInvalid)
	}
	ast, iss := s.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("filter %q: %s: %w", src, iss.Err(), rampart.ErrInvalid)
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("filter %q gives %s, not a true/false answer: %w", src, ast.OutputType(), rampart.ErrInvalid)
	}
	prg, err := s.env.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("filter %q: %s: %w", src, err, rampart.ErrInvalid)
	}
	return &Expr{src: src, prg: prg}, nil
}

// String returns the expression's source.
func (e *Expr) String() string { return e.src }

// ErrEval marks an evaluation failure (a missing map key, the cost limit).
var ErrEval = errors.New("filter evaluation failed")

// Match evaluates the expression over vars. Values must match the schema's types: string,
// int64 (or int), bool, time.Time, []string, map[string]string.
func (e *Expr) Match(vars map[string]any) (bool, error) {
	for k, v := range vars {
		switch x := v.(type) {
		case int:
			vars[k] = int64(x)
		case time.Time:
			vars[k] = x.UTC()
		}
	}
	out, _, err := e.prg.Eval(vars)
	if err != nil {
		return false, fmt.Errorf("%w: %q: %s", ErrEval, e.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w: %q did not give a boolean", ErrEval, e.src)
	}
	return b, nil
}
