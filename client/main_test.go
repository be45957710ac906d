package client_test

import (
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// testRedisTimeout is the Redis timeout of the tests' Hubs and breakers
// that set none. The default, 250ms, is a production figure: on a loaded
// test machine (2 cores, the race detector, other test binaries) a script
// call now and then takes longer, and the breaker then rightly follows its
// outage policy, which a test of exact counts or of the breaker's states
// reads as a wrong answer. Tests of stalls and outages set the timeout
// they measure against with WithRedisTimeout.
const testRedisTimeout = 2 * time.Second

// TestMain also stops the Sentinel group and cluster the failover tests
// share (started once for the package: failover_test.go).
func TestMain(m *testing.M) {
	client.SetDefaultRedisTimeout(testRedisTimeout)
	redistest.Main(m)
}
