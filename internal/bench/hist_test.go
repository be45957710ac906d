package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueExactlyOnce(t *testing.T) {
	prevHi := int64(-1)
	for i := 0; i < histSize; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= histLinear && float64(hi-lo+1)/float64(lo) > 1.0/64+1e-12 {
			t.Fatalf("bucket %d [%d,%d] is wider than 1/64 of its values", i, lo, hi)
		}
		prevHi = hi
		if hi == math.MaxInt64 {
			return
		}
	}
	t.Fatalf("buckets end at %d, before MaxInt64", prevHi)
}

func TestQuantileIsExactBelow128nsAndNearestRank(t *testing.T) {
	h := NewHistogram()
	for v := 1; v <= 100; v++ {
		h.Record(time.Duration(v))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}, {0.505, 51}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if h.Mean() != 50 { // (1+...+100)/100 = 50.5, truncated
		t.Errorf("Mean = %v", h.Mean())
	}
}

func TestQuantileOfLargeValuesIsWithinTheBucketError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram()
	vals := make([]time.Duration, 20000)
	for i := range vals {
		vals[i] = time.Duration(rng.ExpFloat64() * float64(50*time.Microsecond))
		h.Record(vals[i])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := Quantile(vals, q)
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 1.0/64 {
			t.Errorf("q%v: histogram %v, exact %v (relative error %.4f > 1/64)", q, got, exact, rel)
		}
	}
	if h.Quantile(1) != time.Duration(h.Max) {
		t.Errorf("the 1-quantile %v is not the maximum %v", h.Quantile(1), time.Duration(h.Max))
	}
}

func TestHistogramSurvivesJSONAndMerges(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	for v := 1; v <= 1000; v++ {
		a.Record(time.Duration(v) * time.Microsecond)
		b.Record(time.Duration(v) * time.Millisecond)
	}
	data, err := json.Marshal(b.Sparse())
	if err != nil {
		t.Fatal(err)
	}
	var decoded Histogram
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if got, want := decoded.Dense().Quantile(0.5), b.Quantile(0.5); got != want {
		t.Errorf("median after JSON %v, before %v", got, want)
	}
	a.Merge(&decoded)
	if a.N != 2000 || time.Duration(a.Max) != time.Second {
		t.Errorf("merged N %d max %v", a.N, time.Duration(a.Max))
	}
	// The 1000th of 2000 values is the largest microsecond one.
	if got := a.Quantile(0.5); math.Abs(float64(got-time.Millisecond)) > float64(time.Millisecond)/64 {
		t.Errorf("merged median %v, want about 1ms", got)
	}
	if empty := NewHistogram(); empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram reports a value")
	}
}

func TestQuantileOfSliceAndMedian(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if Quantile(ds, 0.5) != 3 || Quantile(ds, 0.99) != 5 || Quantile(ds, 0.2) != 1 || Quantile(nil, 0.5) != 0 {
		t.Errorf("slice quantiles wrong: %v", ds)
	}
	if Median([]float64{3, 1, 2}) != 2 || Median([]float64{4, 1, 3, 2}) != 2.5 || !math.IsNaN(Median(nil)) {
		t.Error("Median wrong")
	}
	xs := []float64{3, 1, 2}
	Median(xs)
	if xs[0] != 3 {
		t.Error("Median reordered its argument")
	}
}

func TestLinearFit(t *testing.T) {
	slope, r2 := LinearFit([][2]float64{{0, 10}, {1, 12}, {2, 14}, {3, 16}})
	if slope != 2 || math.Abs(r2-1) > 1e-12 {
		t.Errorf("exact line: slope %v r2 %v", slope, r2)
	}
	_, r2 = LinearFit([][2]float64{{0, 0}, {1, 10}, {2, 0}, {3, 10}})
	if r2 > 0.5 {
		t.Errorf("zig-zag fits with R² %v", r2)
	}
	if s, _ := LinearFit([][2]float64{{1, 1}}); !math.IsNaN(s) {
		t.Errorf("one point gave slope %v", s)
	}
}
