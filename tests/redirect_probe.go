// A probe for tests/redirect_probe.py: what Go's net/http does with a 307 answering a PUT with a body.
package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	url, file, kind, expect := os.Args[1], os.Args[2], os.Args[3], os.Args[4] == "expect"
	data, _ := os.ReadFile(file)
	var req *http.Request
	var err error
	switch kind {
	case "bytes":
		req, err = http.NewRequest("PUT", url, bytes.NewReader(data))
	case "file":
		f, _ := os.Open(file)
		req, err = http.NewRequest("PUT", url, f)
		req.ContentLength = int64(len(data))
	}
	if err != nil {
		fmt.Println("error", err)
		return
	}
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	fmt.Println("status", resp.StatusCode)
}
