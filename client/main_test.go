package client_test

import (
	"os"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/client"
)

// testRedisTimeout is the Redis timeout of the tests' Hubs and breakers
// that set none. The default, 250ms, is a production figure: on a loaded
// test machine (2 cores, the race detector, other test binaries) a script
// call now and then takes longer, and the breaker then rightly follows its
// outage policy, which a test of exact counts or of the breaker's states
// reads as a wrong answer. Tests of stalls and outages set the timeout
// they measure against with WithRedisTimeout.
const testRedisTimeout = 2 * time.Second

func TestMain(m *testing.M) {
	client.SetDefaultRedisTimeout(testRedisTimeout)
	os.Exit(m.Run())
}
