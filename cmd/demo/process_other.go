//go:build !linux

package main

import "syscall"

// procAttr puts a program in a process group of its own, so that a Ctrl-C
// at the terminal reaches only the demo, which stops the programs in order.
// Without Linux's parent-death signal, a demo that is killed outright
// leaves them running.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
