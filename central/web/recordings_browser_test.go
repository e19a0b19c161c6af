package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/store/storetest"
)

// TestBrowserRecording drives the recording page in headless Chromium:
// without the script the transcript shows with its timestamps; with it,
// playback reveals the lines in time until the last; marking the
// recording reviewed shows who and when; no console error (CSP included).
func TestBrowserRecording(t *testing.T) {
	bin := chromium(t)
	f := newRecFixture(t, storetest.SQLite(t), clockwork.NewFakeClockAt(time.Now().Add(time.Minute)))
	hs := httptest.NewServer(f.srv.Handler())
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	bctx, tcancel := context.WithTimeout(bctx, 60*time.Second)
	defer tcancel()
	var mu sync.Mutex
	var consoleErrors []string
	msgs := chromedp.Console(bctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				consoleErrors = append(consoleErrors, m.String()+" at "+m.URL+":"+fmt.Sprint(m.Line))
				mu.Unlock()
			}
		}
	}()
	page := hs.URL + "/recordings/gw-1/S-1"
	setJS := func(disabled bool) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: disabled})
			return err
		})
	}
	// Without JavaScript: a plain transcript with timestamps, no player.
	if err := chromedp.Do(bctx, setJS(true), chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#transcript li"))); err != nil {
		t.Fatal(err)
	}
	plain, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#transcript")))
	if err != nil {
		t.Fatal(err)
	}
	playerShown, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`!document.getElementById('player').hidden`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plain, "[+0.100s]") || !strings.Contains(plain, "E-104 occlusion cleared") || !strings.Contains(plain, "[+1.000s]") || playerShown {
		t.Fatalf("without JS: player shown %v, transcript %q", playerShown, plain)
	}
	// With JavaScript: play at 4x; the lines appear in time, the last one
	// (at +1.000 s) after about 250 ms, not at once.
	if err := chromedp.Do(bctx, setJS(false), chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#play"))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#speed"), "4"), chromedp.Click(chromedp.CSS("#play"))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	first, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#transcript li.shown').length`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.getElementById('transcript').hasAttribute('data-done')`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("playback did not finish: %v", err)
	}
	took := time.Since(start)
	shown, err := chromedp.Run(bctx, chromedp.Evaluate[int](`Array.prototype.filter.call(document.querySelectorAll('#transcript li'),function(li){return li.offsetParent!==null}).length`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("playback at 4x: %d line(s) at once, all %d visible after %s", first, shown, took.Round(time.Millisecond))
	if first >= 4 || shown != 4 || took < 150*time.Millisecond {
		t.Fatalf("playback not timed: %d at once, %d visible after %s", first, shown, took)
	}
	// Mark reviewed: the page reloads with who and when.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#mark-reviewed")), chromedp.WaitVisible(chromedp.CSS("#review-mark span.ok"))); err != nil {
		t.Fatal(err)
	}
	mark, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#review-mark")))
	if err != nil || !strings.Contains(mark, "Reviewed by "+user) {
		t.Fatalf("review mark %q %v", mark, err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/recordings?reviewed=yes"), chromedp.WaitVisible(chromedp.CSS(`a[href="/recordings/gw-1/S-1"]`))); err != nil {
		t.Fatal(err)
	}
	tcancel()
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Fatalf("console errors: %v", consoleErrors)
	}
}
