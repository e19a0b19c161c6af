package front_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/front"
)

// ExampleFront admits connections under caps: with MaxPerSource 1, a
// second connection from the same address is refused before any TLS work,
// and the refusal is reported with its reason code.
func ExampleFront() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	refused := make(chan string, 1)
	f := front.New(ln, front.Options{
		Limits:    front.Limits{MaxConns: 4, MaxPending: 4, MaxPerSource: 1, HandshakeTimeout: time.Second},
		OnRefused: func(source, reason string) { refused <- source + " " + reason },
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	held := make(chan struct{})
	go func() {
		defer wg.Done()
		f.Serve(ctx, func(c *front.Conn) {
			// A real handler runs the TLS handshake (front.ServerConfig),
			// checks the peer, then calls c.Establish before relaying.
			c.Establish()
			<-held
		})
	}()

	first, _ := net.Dial("tcp", ln.Addr().String())
	defer first.Close()
	second, _ := net.Dial("tcp", ln.Addr().String())
	defer second.Close()
	fmt.Println("refused:", <-refused)

	close(held)
	cancel()
	wg.Wait()
	// Output: refused: 127.0.0.1 source_limit
}
