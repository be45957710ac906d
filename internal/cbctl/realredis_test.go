package cbctl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

func TestListOnAThreeMasterCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	cc := c.Client(t)
	ctx := context.Background()
	// Twelve names spread over the slots, so over the three masters.
	var want []string
	for i := range 12 {
		name := fmt.Sprintf("svc-%02d", i)
		want = append(want, name)
		breaker(t, cc, name, quickConfig(), "")
	}
	// One breaker known only by its keys: SCAN on every master must find it.
	if err := cc.SRem(ctx, breakerbox.RegistryKey, "svc-07").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Control(ctx, cc, "svc-07", breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	clusterURL := "redis://" + c.Addrs[0] + "?addr=" + url.QueryEscape(c.Addrs[1]) + "&addr=" + url.QueryEscape(c.Addrs[2])
	env := map[string]string{"REDIS_URL": clusterURL, "USER": "alice"}

	r := cbctl(t, env, "list", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var sts []breakerbox.Status
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range sts {
		got = append(got, st.Name)
		if (st.Name == "svc-07") != (st.Mode == breakerbox.ModeForcedOpen) {
			t.Errorf("%s: mode %s", st.Name, st.Mode)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("list on cluster = %v, want %v", got, want)
	}

	if r := cbctl(t, env, "reset", "svc-07"); r.code != ExitOK {
		t.Fatalf("reset on cluster: exit %d: %s", r.code, r.stderr)
	}
	if r := cbctl(t, env, "status", "nope"); r.code != ExitUnknownBreaker {
		t.Errorf("unknown breaker on cluster: exit %d: %s", r.code, r.stderr)
	}

	r = cbctl(t, env, "scripts", "-o", "json")
	var infos []scriptInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || r.code != ExitOK {
		t.Fatalf("scripts: exit %d, %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	if len(infos) != 2 || !infos[0].Loaded || infos[0].Servers != 3 || !infos[1].Loaded || infos[1].Servers != 3 {
		t.Errorf("scripts on a 3-master cluster = %+v, want loaded on 3", infos)
	}
}

func TestRealRedisPasswordErrorsExit5(t *testing.T) {
	s := redistest.Start(t, "--requirepass", "s3cret-horse")
	tests := []struct{ name, url string }{
		{"missing password", "redis://" + s.Addr + "/0"},
		{"wrong password", "redis://:wrong-staple@" + s.Addr + "/0"},
		{"wrong user", "redis://mallory:s3cret-horse@" + s.Addr + "/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cbctl(t, nil, "list", "--redis-url", tt.url)
			if r.code != ExitAuth {
				t.Fatalf("exit %d, want %d: %s", r.code, ExitAuth, r.stderr)
			}
			if strings.Contains(r.stderr, "s3cret-horse") || strings.Contains(r.stderr, "wrong-staple") {
				t.Errorf("password printed: %s", r.stderr)
			}
		})
	}
	if r := cbctl(t, nil, "list", "--redis-url", "redis://:s3cret-horse@"+s.Addr+"/0"); r.code != ExitOK {
		t.Errorf("right password: exit %d: %s", r.code, r.stderr)
	}
}

func TestACLUserWithoutEvalExits5(t *testing.T) {
	s := redistest.Start(t)
	rdb := s.Client(t)
	ctx := context.Background()
	// A user who may read keys but not run scripts.
	if err := rdb.Do(ctx, "ACL", "SETUSER", "viewer", "on", ">viewpw", "~*", "+@read", "+ping", "+hello", "+auth").Err(); err != nil {
		t.Fatal(err)
	}
	breaker(t, rdb, "svc", quickConfig(), "")
	r := cbctl(t, nil, "status", "svc", "--redis-url", "redis://viewer:viewpw@"+s.Addr+"/0")
	if r.code != ExitAuth || !strings.Contains(r.stderr, "NOPERM") {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
}

func TestUnreachableRedisExits4(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr
	s.Stop(t) // a port that was Redis a moment ago
	r := cbctl(t, nil, "status", "svc", "--redis-url", "redis://:pw-not-shown@"+addr+"/0")
	if r.code != ExitUnreachable {
		t.Fatalf("exit %d, want %d: %s", r.code, ExitUnreachable, r.stderr)
	}
	if !strings.Contains(r.stderr, "cannot reach Redis at redis://:xxxxx@"+addr) || strings.Contains(r.stderr, "pw-not-shown") {
		t.Errorf("stderr %q", r.stderr)
	}
}

// selfSignedCert writes a certificate and key for 127.0.0.1 into dir.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLS(t *testing.T) {
	certFile, keyFile := selfSignedCert(t, t.TempDir())
	_, tlsPort, _ := net.SplitHostPort(closedAddr(t))
	redistest.Start(t, "--tls-port", tlsPort, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-auth-clients", "no")
	addr := "127.0.0.1:" + tlsPort
	tests := []struct {
		name, url string
		code      int
		hint      string
	}{
		{"rediss with verification off", "rediss://" + addr + "/0?skip_verify=true", ExitOK, ""},
		{"rediss with an untrusted certificate", "rediss://" + addr + "/0", ExitUnreachable, "SSL_CERT_FILE"},
		{"plain redis to a TLS port", "redis://" + addr + "/0", ExitUnreachable, "use rediss://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cbctl(t, nil, "list", "--timeout", "3s", "--redis-url", tt.url)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.hint) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", r.code, tt.code, r.stderr, tt.hint)
			}
		})
	}
}

// TestDocumentedACLOnAClusterNeedsClusterSlots: the cbctl operator's
// rule of docs/operations.md, on every node of a cluster, needs
// +cluster|slots, as the docs say.
func TestDocumentedACLOnAClusterNeedsClusterSlots(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	rule := redistest.DocumentedACL(t, "breakerbox-cbctl", "pw")
	setUser := func(extra ...string) { setACLUser(t, c.Addrs, "breakerbox", append(rule, extra...)) }
	breaker(t, c.Client(t), "svc", quickConfig(), "f")
	u := "redis://breakerbox:pw@" + c.Addrs[0] + "?addr=" + url.QueryEscape(c.Addrs[1])

	setUser()
	if r := cbctl(t, nil, "list", "--redis-url", u); r.code != ExitAuth || !strings.Contains(r.stderr, "cluster|slots") {
		t.Errorf("without +cluster|slots: exit %d: %s", r.code, r.stderr)
	}
	setUser("+cluster|slots")
	for _, args := range [][]string{{"list"}, {"status", "svc"}, {"reset", "svc"}, {"scripts"}, {"watch", "--count", "1"}} {
		if r := cbctl(t, nil, append(args, "--redis-url", u)...); r.code != ExitOK {
			t.Errorf("%v with +cluster|slots: exit %d: %s", args, r.code, r.stderr)
		}
	}
}

// TestDocumentedACLOnADatabaseOtherThan0NeedsSelect: go-redis selects the
// URL's database on every connection, so the rules need +select there, as
// docs/operations.md says.
func TestDocumentedACLOnADatabaseOtherThan0NeedsSelect(t *testing.T) {
	s := redistest.Start(t)
	rule := redistest.DocumentedACL(t, "breakerbox-cbctl-ro", "pw")
	u := "redis://breakerbox:pw@" + s.Addr + "/2"
	setACLUser(t, []string{s.Addr}, "breakerbox", rule)
	if r := cbctl(t, nil, "list", "--redis-url", u); r.code != ExitAuth || !strings.Contains(r.stderr, "'select'") {
		t.Errorf("database 2 without +select: exit %d: %s", r.code, r.stderr)
	}
	setACLUser(t, []string{s.Addr}, "breakerbox", append(rule, "+select"))
	if r := cbctl(t, nil, "list", "--redis-url", u); r.code != ExitOK {
		t.Errorf("database 2 with +select: exit %d: %s", r.code, r.stderr)
	}
}
