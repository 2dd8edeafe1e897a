module github.com/csr-agent/csr-agent/tools/lifeline

go 1.26.0
