// Command cpuguest is a CPU-bound Generation 2 test program: it fills a
// buffer (argv[1] MiB, 256 by default) and hashes it with SHA-256
// (argv[2] times, 8 by default), then prints the digest and how long the
// hashing took. The same static binary runs natively, as the reference
// a platform is measured against.
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	mib, rounds := 256, 8
	if len(os.Args) > 1 {
		mib, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		rounds, _ = strconv.Atoi(os.Args[2])
	}
	buf := make([]byte, mib<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	var sum [32]byte
	for r := 0; r < rounds; r++ {
		buf[0] = sum[0]
		sum = sha256.Sum256(buf)
	}
	took := time.Since(start)
	fmt.Printf("sha256 %x over %d MiB %d times in %d us\n", sum[:8], mib, rounds, took.Microseconds())
}
