package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// funcLinesMax bounds the length of a function of ledgerd and stockctl
// (non-test code), declaration to closing brace; a longer one fails
// TestFunctionsShort and is split.
const funcLinesMax = 70

// TestFunctionsShort keeps every function of ledgerd and stockctl short
// enough to read at once, and says what is there and doc-less.
func TestFunctionsShort(t *testing.T) {
	fset := token.NewFileSet()
	for _, dir := range []string{".", "../stockctl"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > funcLinesMax {
					t.Errorf("%s: %s is %d lines, more than %d", fset.Position(fn.Pos()), fn.Name.Name, n, funcLinesMax)
				}
				if fn.Name.IsExported() && fn.Doc == nil {
					t.Errorf("%s: %s has no doc comment", fset.Position(fn.Pos()), fn.Name.Name)
				}
			}
		}
	}
}
