package client

import (
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/internal/redisurl"
)

// DefaultRedisURL is used when REDIS_URL is unset, as in the seed.
const DefaultRedisURL = redisurl.Default

// RedisFromEnv builds a Redis client from the REDIS_URL environment variable
// (default redis://localhost:6379/0). New never reads the environment.
func RedisFromEnv() (redis.UniversalClient, error) { return redisurl.FromEnv() }

// RedisFromURL builds a Redis client from a redis:// or rediss:// (TLS) URL.
// A URL with addr= query parameters names several nodes of a Redis Cluster:
// redis://host1:7000?addr=host2:7001&addr=host3:7002; one with master_name=
// names the sentinels of a master:
// redis://s1:26379/0?master_name=mymaster&addr=s2:26379&password=PW (see
// docs/operations.md). The client follows failovers within about a second
// of the servers, and bounds each call by its context's deadline.
func RedisFromURL(rawURL string) (redis.UniversalClient, error) { return redisurl.New(rawURL) }
