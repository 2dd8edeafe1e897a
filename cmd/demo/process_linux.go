package main

import "syscall"

// procAttr puts a program in a process group of its own, so that a Ctrl-C
// at the terminal reaches only the demo, which stops the programs in order,
// and asks the kernel to send it SIGTERM if the demo dies without cleaning
// up (killed, crashed). The parent-death signal is tied to the thread that
// started the child; the Go runtime does not end its threads while the
// program runs (no goroutine here locks one), so that is the demo itself.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
