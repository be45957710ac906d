package main

import (
	"os"
	"testing"
)

func TestDemoRunsWithoutRedisURL(t *testing.T) {
	if testing.Short() {
		t.Skip("the full demo takes 5s")
	}
	t.Setenv("REDIS_URL", "")
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if code := run(nil, devnull, devnull); code != 0 {
		t.Fatalf("demo exited %d", code)
	}
}
