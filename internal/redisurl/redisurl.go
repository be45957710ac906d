// Package redisurl builds go-redis clients from redis:// URLs, for the
// worker's package (client.RedisFromURL) and for the commands that must
// not import it (cbctl, alertd).
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/redis/go-redis/v9"
)

// Default is used when REDIS_URL is unset, as in the seed.
const Default = "redis://localhost:6379/0"

// FromEnv builds a Redis client from the REDIS_URL environment variable
// (default redis://localhost:6379/0).
func FromEnv() (redis.UniversalClient, error) {
	u := os.Getenv("REDIS_URL")
	if u == "" {
		u = Default
	}
	return New(u)
}

// New builds a Redis client from a redis:// or rediss:// (TLS) URL. A URL
// with addr= query parameters names several nodes of a Redis Cluster:
// redis://host1:7000?addr=host2:7001&addr=host3:7002.
func New(rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message would repeat the URL, password included
		}
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if u.Query().Has("addr") {
		opt, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		return redis.NewClusterClient(opt), nil
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	return redis.NewClient(opt), nil
}
