package projections_test

import (
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// sqlExempt lists SQL arguments built otherwise than from constants, and
// why each is safe.
var sqlExempt = map[string]string{
	"m.sql": "migration text embedded from migrations/*.sql at build time",
}

// TestSQLOnlyWithParameters reads the package's source: every SQL text given
// to Exec, Query, QueryRow or Queue must be built from string constants
// (literals and const names) and sanitized identifiers alone, so that every
// value reaches Postgres as a parameter and never as SQL text.
func TestSQLOnlyWithParameters(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var parsed []*ast.File
	consts := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, f)
		ast.Inspect(f, func(n ast.Node) bool {
			if d, ok := n.(*ast.GenDecl); ok && d.Tok == token.CONST {
				for _, s := range d.Specs {
					for _, id := range s.(*ast.ValueSpec).Names {
						consts[id.Name] = true
					}
				}
			}
			return true
		})
	}
	var constant func(ast.Expr) bool
	constant = func(e ast.Expr) bool {
		switch x := e.(type) {
		case *ast.BasicLit:
			return x.Kind == token.STRING
		case *ast.Ident:
			return consts[x.Name]
		case *ast.ParenExpr:
			return constant(x.X)
		case *ast.BinaryExpr:
			return x.Op == token.ADD && constant(x.X) && constant(x.Y)
		case *ast.CallExpr:
			// pgx.Identifier{...}.Sanitize(): a quoted identifier.
			sel, ok := x.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Sanitize" {
				return false
			}
			lit, ok := sel.X.(*ast.CompositeLit)
			return ok && exprText(fset, lit.Type) == "pgx.Identifier"
		}
		return false
	}
	checked := 0
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			var sql ast.Expr
			switch sel.Sel.Name {
			case "Queue":
				if len(call.Args) > 0 {
					sql = call.Args[0]
				}
			case "Exec", "Query", "QueryRow":
				if len(call.Args) >= 2 {
					sql = call.Args[1]
				}
			}
			if sql == nil {
				return true
			}
			checked++
			text := exprText(fset, sql)
			if _, ok := sqlExempt[text]; ok || constant(sql) {
				return true
			}
			t.Errorf("%s: SQL built from a non-constant: %s", fset.Position(sql.Pos()), text)
			return true
		})
	}
	if checked < 10 {
		t.Errorf("checked only %d SQL calls: is the source where the test looks?", checked)
	}
}

func exprText(fset *token.FileSet, e ast.Expr) string {
	var b strings.Builder
	_ = printer.Fprint(&b, fset, e)
	return b.String()
}
