package main

import (
	"os"
	"strings"
	"testing"

	"github.com/csr-agent/csr-agent/internal/config"
)

func TestPackageDocumentationListsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Docs() {
		if !strings.Contains(string(doc), "//	"+v.Name+" ") {
			t.Errorf("doc.go does not document %s", v.Name)
		}
	}
}
