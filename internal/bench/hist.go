package bench

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// Histogram counts latencies in log-linear buckets: exact below 128ns,
// then 64 buckets per power of two (relative error under 1.6%). It is not
// safe for concurrent use; each goroutine keeps its own and they are merged.
type Histogram struct {
	Counts map[int]int64 `json:"counts"` // bucket index -> count (sparse, for JSON)
	N      int64         `json:"n"`
	Sum    int64         `json:"sum_ns"`
	Max    int64         `json:"max_ns"`

	dense []int64
}

const (
	histLinear = 128 // values below are their own bucket
	histSub    = 64  // buckets per power of two above
	histShift  = 7   // log2(histLinear)
	histSize   = histLinear + (64-histShift)*histSub
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{dense: make([]int64, histSize)} }

func bucketOf(v int64) int {
	if v < histLinear {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histShift // >= 1
	sub := int(uint64(v) >> uint(e))       // in [64, 127]
	return histLinear + (e-1)*histSub + (sub - histSub)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < histLinear {
		return int64(i), int64(i)
	}
	e := (i-histLinear)/histSub + 1
	sub := int64((i-histLinear)%histSub + histSub)
	lo = sub << uint(e)
	return lo, lo + (int64(1) << uint(e)) - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.dense[bucketOf(v)]++
	h.N++
	h.Sum += v
	if v > h.Max {
		h.Max = v
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	o.compact()
	for i, c := range o.Counts {
		h.dense[i] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// compact fills Counts from the dense buckets (for JSON and Merge).
func (h *Histogram) compact() {
	if h.dense == nil {
		return
	}
	h.Counts = map[int]int64{}
	for i, c := range h.dense {
		if c != 0 {
			h.Counts[i] = c
		}
	}
}

// Sparse returns h ready to be encoded as JSON.
func (h *Histogram) Sparse() *Histogram {
	h.compact()
	return h
}

// Dense turns a histogram decoded from JSON back into a usable one.
func (h *Histogram) Dense() *Histogram {
	if h.dense == nil {
		h.dense = make([]int64, histSize)
		for i, c := range h.Counts {
			if i >= 0 && i < histSize {
				h.dense[i] += c
			}
		}
	}
	return h
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// recorded value v such that at least q of the values are <= v, to within
// the bucket's width (reported as the bucket's midpoint, capped by Max);
// the 1-quantile is the maximum itself.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.N)))
	rank = min(max(rank, 1), h.N)
	if rank == h.N {
		return time.Duration(h.Max)
	}
	var seen int64
	for i, c := range h.dense {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return time.Duration(min(lo+(hi-lo)/2, h.Max))
		}
	}
	return time.Duration(h.Max)
}

// Mean returns the average recorded value.
func (h *Histogram) Mean() time.Duration {
	if h.N == 0 {
		return 0
	}
	return time.Duration(h.Sum / h.N)
}

// Quantile returns the nearest-rank q-quantile of ds (sorted in place).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := int(math.Ceil(q * float64(len(ds))))
	rank = min(max(rank, 1), len(ds))
	return ds[rank-1]
}

// Median returns the median of xs (the mean of the middle two for an even
// count); xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
