package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func main() {
	fmt.Println("processors", runtime.NumCPU())
	runtime.GOMAXPROCS(2)
	var wg sync.WaitGroup
	sum := make([]int, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 1000000; j++ {
				sum[i] += j % 7
			}
		}(i)
	}
	wg.Wait()
	fmt.Println("goroutines done", sum[0], sum[7])
	t0 := time.Now()
	time.Sleep(50 * time.Millisecond)
	tk := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < 3; i++ {
		<-tk.C
	}
	fmt.Println("timers done", time.Since(t0) >= 80*time.Millisecond)
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i)
	}
	fmt.Println("allocated", len(big), big[12345])
	if len(os.Args) > 1 {
		panic("guest panics on purpose")
	}
}
