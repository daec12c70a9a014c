package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// funcLinesMax bounds the length of a function of the module (non-test
// code), declaration to closing brace; a longer one fails TestLayout and is
// split.
const funcLinesMax = 70

// importRules says which imports a package of the module may not have:
// the vocabulary does no I/O, and the fold's files import no store or
// transport (only the Postgres store's files import pgx).
var importRules = []struct {
	dir, except string // except: a glob of the files the rule leaves out
	banned      []string
	why         string
}{
	{"ledger", "", []string{"github.com/nats-io/", "github.com/jackc/pgx", "stockledger/"}, "the vocabulary imports no transport, database or project package"},
	{"projections", "", []string{"github.com/nats-io/", "stockledger/ledger/transport", "stockledger/consumers"}, "the fold and the stores do not import the transport"},
	{"projections", "postgres*.go", []string{"github.com/jackc/pgx"}, "only the Postgres store's files import pgx: the fold is pure"},
}

// TestLayout reads every non-test Go file of the module and checks the shape
// a newcomer relies on: every function at most funcLinesMax lines, a doc
// comment on every exported function and method, a package comment on every
// package, and the import rules above.
func TestLayout(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	packageDoc := map[string]bool{} // directory → has a package comment
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.Dir(rel)
		packageDoc[dir] = packageDoc[dir] || f.Doc != nil
		checkFuncs(t, fset, f)
		checkImports(t, rel, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, ok := range packageDoc {
		if !ok {
			t.Errorf("package %s has no package comment saying its job", dir)
		}
	}
}

func checkFuncs(t *testing.T, fset *token.FileSet, f *ast.File) {
	t.Helper()
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

func checkImports(t *testing.T, rel string, f *ast.File) {
	t.Helper()
	for _, rule := range importRules {
		if filepath.Dir(rel) != rule.dir {
			continue
		}
		if skip, _ := filepath.Match(rule.except, filepath.Base(rel)); skip {
			continue
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range rule.banned {
				if strings.HasPrefix(path, banned) && !(rule.dir == "ledger" && path == "stockledger/ledger") {
					t.Errorf("%s imports %s: %s", rel, path, rule.why)
				}
			}
		}
	}
}
