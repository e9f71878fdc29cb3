package kubernetes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-director/lvs-director/kubernetes/kubetest"
)

// testPKI is a CA with a server certificate (for 127.0.0.1 and api.example) and a client
// certificate.
type testPKI struct {
	caPEM                []byte
	serverCert           tls.Certificate
	clientPEM, clientKey []byte
	pool                 *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	}
	p := &testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	sc, sk := issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "api"}, DNSNames: []string{"api.example"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if p.serverCert, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	p.clientPEM, p.clientKey = issue(3, &x509.Certificate{Subject: pkix.Name{CommonName: "director", Organization: []string{"lvs"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return p
}

// tlsAPI is an HTTPS server that answers a node list and reports who the client was.
func tlsAPI(t *testing.T, p *testPKI) (*httptest.Server, chan string) {
	t.Helper()
	who := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := "anonymous"
		if len(r.TLS.PeerCertificates) > 0 {
			id = "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName
		} else if u, pw, ok := r.BasicAuth(); ok {
			id = "basic:" + u + ":" + pw
		} else if a := r.Header.Get("Authorization"); a != "" {
			id = a
		}
		who <- id + " sni:" + r.TLS.ServerName
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"n1"}}]}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are on purpose
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientCAs: p.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, who
}

// callWith loads the kubeconfig text (written into a fresh directory with the given extra
// files) and lists nodes; it returns what the server saw.
func callWith(t *testing.T, kubeconfig string, files map[string][]byte, who chan string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := LoadKubeconfig(path, "")
	if err != nil {
		return "", err
	}
	c, err := NewClient(rc)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := listOnce[Node](ctx, c, resNodes, "", listOptions{})
	if err != nil {
		return "", err
	}
	if len(page.Items) != 1 || page.Items[0].Name != "n1" {
		t.Errorf("list: %+v", page)
	}
	return <-who, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func kubeconfigText(cluster, user string) string {
	return `apiVersion: v1
kind: Config
preferences: {}
clusters:
- name: c
  cluster:
` + indent(cluster, "    ") + `
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: x}
users:
- name: u
  user:
` + indent(user, "    ") + `
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: ignored}
current-context: ctx
`
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n")
}

func TestKubeconfigAuth(t *testing.T) {
	p := newTestPKI(t)
	srv, who := tlsAPI(t, p)
	// The server's certificate is for 127.0.0.1 and api.example; the tests reach it by
	// "localhost" where they check tls-server-name.
	byName := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	tests := []struct {
		name          string
		cluster, user string
		files         map[string][]byte
		want          string
	}{
		{"token, CA data", "server: " + srv.URL + "\ncertificate-authority-data: " + b64(p.caPEM), "token: s3cret", nil,
			"Bearer s3cret sni:"},
		{"tokenFile and CA file, relative to the kubeconfig", "server: " + srv.URL + "\ncertificate-authority: pki/ca.crt",
			"tokenFile: token", map[string][]byte{"pki/ca.crt": p.caPEM, "token": []byte("from-file\n")}, "Bearer from-file sni:"},
		{"client certificate files", "server: " + srv.URL + "\ncertificate-authority: ca.crt",
			"client-certificate: c.crt\nclient-key: c.key", map[string][]byte{"ca.crt": p.caPEM, "c.crt": p.clientPEM, "c.key": p.clientKey},
			"cert:director sni:"},
		{"client certificate data", "server: " + srv.URL + "\ncertificate-authority-data: " + b64(p.caPEM),
			"client-certificate-data: " + b64(p.clientPEM) + "\nclient-key-data: " + b64(p.clientKey), nil, "cert:director sni:"},
		{"basic", "server: " + srv.URL + "\ncertificate-authority-data: " + b64(p.caPEM), "username: admin\npassword: pw", nil,
			"basic:admin:pw sni:"},
		{"tls-server-name", "server: " + byName + "\ncertificate-authority-data: " + b64(p.caPEM) + "\ntls-server-name: api.example",
			"token: t", nil, "Bearer t sni:api.example"},
		{"insecure-skip-tls-verify, no user fields", "server: " + srv.URL + "\ninsecure-skip-tls-verify: true", "{}", nil,
			"anonymous sni:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := callWith(t, kubeconfigText(tt.cluster, tt.user), tt.files, who)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("server saw %q, want %q", got, tt.want)
			}
		})
	}

	// Without the CA, the server's certificate is not trusted; by a name it has no
	// certificate for, neither.
	if _, err := callWith(t, kubeconfigText("server: "+srv.URL, "token: t"), nil, who); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("no CA: %v", err)
	}
	if _, err := callWith(t, kubeconfigText("server: "+byName+"\ncertificate-authority-data: "+b64(p.caPEM), "token: t"), nil, who); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong name: %v", err)
	}
}

// A token file is read again (at most once a minute): rotated service account tokens.
func TestTokenFileReread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := &tokenSource{file: path}
	if got := ts.get(); got != "one" {
		t.Fatalf("token %q", got)
	}
	if err := os.WriteFile(path, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := ts.get(); got != "one" {
		t.Errorf("re-read within a minute: %q", got)
	}
	ts.readAt = time.Now().Add(-2 * tokenFileReread)
	if got := ts.get(); got != "two" {
		t.Errorf("after a minute: %q", got)
	}
	// A failed read keeps the last token.
	os.Remove(path)
	ts.readAt = time.Time{}
	if got := ts.get(); got != "two" {
		t.Errorf("after the file went away: %q", got)
	}
}

func TestKubeconfigContexts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	text := `clusters:
- name: a
  cluster: {server: "https://a.example:6443"}
- name: b
  cluster: {server: "b.example:6443/prefix/"}
users:
- {name: ua, user: {token: ta}}
contexts:
- {name: one, context: {cluster: a, user: ua}}
- {name: two, context: {cluster: b}}
current-context: one
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := LoadKubeconfig(path, "")
	if err != nil || rc.Host != "https://a.example:6443" || rc.BearerToken != "ta" {
		t.Errorf("current context: %+v %v", rc, err)
	}
	rc, err = LoadKubeconfig(path, "two")
	if err != nil || rc.Host != "https://b.example:6443/prefix/" || rc.BearerToken != "" {
		t.Fatalf("context two: %+v %v", rc, err)
	}
	c, err := NewClient(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.url(resServices, "web", nil, "front", "status"); got != "https://b.example:6443/prefix/api/v1/namespaces/web/services/front/status" {
		t.Errorf("url with a path prefix: %s", got)
	}
}

func TestKubeconfigErrors(t *testing.T) {
	ctxs := "contexts:\n- {name: x, context: {cluster: c, user: u}}\ncurrent-context: x\n"
	cluster := "clusters:\n- {name: c, cluster: {server: \"https://127.0.0.1:6443\"}}\n"
	user := func(u string) string { return "users:\n- name: u\n  user:\n" + indent(u, "    ") + "\n" }
	tests := []struct {
		name, text, want string
		files            map[string]string
	}{
		{"not YAML", "clusters: [", "parsing", nil},
		{"no current context", cluster + user("token: t") + "contexts: []\n", "no context given and no current-context set", nil},
		{"unknown context", cluster + user("token: t") + "current-context: y\n", `context "y" not found`, nil},
		{"unknown cluster", user("token: t") + ctxs, `context "x": cluster "c" not found`, nil},
		{"unknown user", cluster + ctxs, `context "x": user "u" not found`, nil},
		{"no server", "clusters:\n- {name: c, cluster: {}}\n" + user("token: t") + ctxs, `cluster "c": no server`, nil},
		{"exec", cluster + ctxs + user("exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: aws"),
			`user "u": unsupported field exec: exec credential plugins are not supported`, nil},
		{"auth-provider", cluster + ctxs + user("auth-provider:\n  name: oidc"), `user "u": unsupported field auth-provider`, nil},
		{"impersonation", cluster + ctxs + user("token: t\nas: admin"), `user "u": unsupported field as: impersonation is not supported`, nil},
		{"impersonation groups", cluster + ctxs + user("token: t\nas-groups: [a]"), `user "u": unsupported field as-groups`, nil},
		{"CA file and data", "clusters:\n- {name: c, cluster: {server: \"https://h\", certificate-authority: ca, certificate-authority-data: eA==}}\n" + user("token: t") + ctxs,
			`cluster "c": both certificate-authority and certificate-authority-data are set`, nil},
		{"CA missing", "clusters:\n- {name: c, cluster: {server: \"https://h\", certificate-authority: ca.crt}}\n" + user("token: t") + ctxs,
			`cluster "c": certificate-authority: open `, nil},
		{"CA not PEM", "clusters:\n- {name: c, cluster: {server: \"https://h\", certificate-authority-data: eA==}}\n" + user("token: t") + ctxs,
			`cluster "c": certificate-authority: no PEM certificate`, nil},
		{"CA bad base64", "clusters:\n- {name: c, cluster: {server: \"https://h\", certificate-authority-data: \"!!\"}}\n" + user("token: t") + ctxs,
			`cluster "c": certificate-authority-data: illegal base64`, nil},
		{"insecure with CA", "clusters:\n- {name: c, cluster: {server: \"https://h\", insecure-skip-tls-verify: true, certificate-authority: ca}}\n" + user("token: t") + ctxs,
			`cluster "c": insecure-skip-tls-verify with a certificate-authority`, map[string]string{"ca": "x"}},
		{"certificate without key", cluster + ctxs + user("client-certificate: c.crt"), `user "u": client-certificate without client-key`, map[string]string{"c.crt": "x"}},
		{"key without certificate", cluster + ctxs + user("client-key-data: eA=="), `user "u": client-key without client-certificate`, nil},
		{"bad key pair", cluster + ctxs + user("client-certificate-data: eA==\nclient-key-data: eA=="), `user "u": client certificate: tls:`, nil},
		{"token file missing", cluster + ctxs + user("tokenFile: tok"), `user "u": tokenFile: open `, nil},
		{"token file empty", cluster + ctxs + user("tokenFile: tok"), `user "u": tokenFile: `, map[string]string{"tok": "\n"}},
		{"token and basic", cluster + ctxs + user("token: t\nusername: a\npassword: b"), `user "u": both a token and a username/password`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, d := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(d), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "kubeconfig")
			if err := os.WriteFile(path, []byte(tt.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKubeconfig(path, "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := LoadKubeconfig(filepath.Join(t.TempDir(), "missing"), ""); err == nil {
		t.Error("missing file: no error")
	}
}

// The kubeconfig the integration tests and the lab write (kubetest.Kubeconfig) loads.
func TestKubeconfigOfKubetest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kubetest.Kubeconfig("https://127.0.0.1:6443", "tok")), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := LoadKubeconfig(path, "")
	if err != nil || rc.Host != "https://127.0.0.1:6443" || rc.BearerToken != "tok" || !rc.TLS.InsecureSkipVerify {
		t.Errorf("%+v %v", rc, err)
	}
}
