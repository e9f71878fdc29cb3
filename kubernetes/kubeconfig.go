package kubernetes

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// RESTConfig is how to reach an API server: what LoadKubeconfig makes of a kubeconfig.
type RESTConfig struct {
	// Host is the API server's URL (https://host:port, possibly with a path prefix).
	Host string
	// TLS is the TLS configuration for https; nil means Go's defaults (system roots).
	TLS *tls.Config
	// BearerToken authenticates with a bearer token; BearerTokenFile names a file that holds
	// one (re-read now and then: projected service account tokens are rotated) and wins over
	// BearerToken, as in client-go.
	BearerToken     string
	BearerTokenFile string
	// Username and Password authenticate with HTTP basic authentication.
	Username, Password string
	// ProxyURL is the cluster's proxy-url; empty means the proxy of the environment
	// (HTTPS_PROXY, NO_PROXY), as client-go does.
	ProxyURL string
	// DisableCompression turns off gzip responses (the cluster's disable-compression).
	DisableCompression bool
	// UserAgent is sent with every request.
	UserAgent string
}

// The kubeconfig format, only as far as we read it. Decoding is not strict: kubeconfigs
// written by kubectl and cloud tools carry many fields (extensions, preferences, namespace
// of contexts...) that do not matter here. The fields we cannot honour and that must not be
// ignored silently (other ways to authenticate, impersonation) are decoded to be refused.
type kubeconfigFile struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string            `yaml:"name"`
		Cluster kubeconfigCluster `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string         `yaml:"name"`
		User kubeconfigUser `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

type kubeconfigCluster struct {
	Server                   string `yaml:"server"`
	TLSServerName            string `yaml:"tls-server-name"`
	InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
	CertificateAuthority     string `yaml:"certificate-authority"`
	CertificateAuthorityData string `yaml:"certificate-authority-data"`
	ProxyURL                 string `yaml:"proxy-url"`
	DisableCompression       bool   `yaml:"disable-compression"`
}

type kubeconfigUser struct {
	ClientCertificate     string `yaml:"client-certificate"`
	ClientCertificateData string `yaml:"client-certificate-data"`
	ClientKey             string `yaml:"client-key"`
	ClientKeyData         string `yaml:"client-key-data"`
	Token                 string `yaml:"token"`
	TokenFile             string `yaml:"tokenFile"`
	Username              string `yaml:"username"`
	Password              string `yaml:"password"`

	// Not supported: refused with their name.
	Exec         any `yaml:"exec"`
	AuthProvider any `yaml:"auth-provider"`
	As           any `yaml:"as"`
	AsUID        any `yaml:"as-uid"`
	AsGroups     any `yaml:"as-groups"`
	AsUserExtra  any `yaml:"as-user-extra"`
}

// LoadKubeconfig reads the kubeconfig at path and returns the configuration of its context
// named contextName, or of its current-context when contextName is empty. It supports what a
// director needs with a remote cluster: the server with its CA (file or data), TLS server
// name or insecure-skip-tls-verify, and a client certificate, a bearer token (or token file)
// or basic authentication. Relative file names are relative to the kubeconfig's directory,
// as in kubectl. Exec plugins, auth providers and impersonation are refused with a clear
// error rather than ignored: they would only fail later, less clearly, at the API server.
func LoadKubeconfig(path, contextName string) (*RESTConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}

	name := contextName
	if name == "" {
		name = kc.CurrentContext
		if name == "" {
			return nil, errors.New("no context given and no current-context set")
		}
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == name {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("context %q not found", name)
	}
	var cluster *kubeconfigCluster
	for i := range kc.Clusters {
		if kc.Clusters[i].Name == clusterName {
			cluster = &kc.Clusters[i].Cluster
			break
		}
	}
	if cluster == nil {
		return nil, fmt.Errorf("context %q: cluster %q not found", name, clusterName)
	}
	user := &kubeconfigUser{}
	if userName != "" {
		found := false
		for i := range kc.Users {
			if kc.Users[i].Name == userName {
				user, found = &kc.Users[i].User, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("context %q: user %q not found", name, userName)
		}
	}

	if cluster.Server == "" {
		return nil, fmt.Errorf("cluster %q: no server", clusterName)
	}
	rc := &RESTConfig{Host: cluster.Server, ProxyURL: cluster.ProxyURL, DisableCompression: cluster.DisableCompression}
	if !strings.Contains(rc.Host, "://") {
		rc.Host = "https://" + rc.Host // as client-go does for a bare host:port
	}
	if err := userSupported(userName, user); err != nil {
		return nil, err
	}

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cluster.TLSServerName}
	clusterOf := fmt.Sprintf("cluster %q", clusterName)
	caData, err := fileOrData(clusterOf, "certificate-authority", resolve(cluster.CertificateAuthority), cluster.CertificateAuthorityData)
	if err != nil {
		return nil, err
	}
	switch {
	case cluster.InsecureSkipTLSVerify && caData != nil:
		// client-go refuses this combination too: one of them is a mistake.
		return nil, fmt.Errorf("cluster %q: insecure-skip-tls-verify with a certificate-authority", clusterName)
	case cluster.InsecureSkipTLSVerify:
		tlsCfg.InsecureSkipVerify = true
	case caData != nil:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caData) {
			return nil, fmt.Errorf("cluster %q: certificate-authority: no PEM certificate", clusterName)
		}
		tlsCfg.RootCAs = pool
	}

	userOf := fmt.Sprintf("user %q", userName)
	certData, err := fileOrData(userOf, "client-certificate", resolve(user.ClientCertificate), user.ClientCertificateData)
	if err != nil {
		return nil, err
	}
	keyData, err := fileOrData(userOf, "client-key", resolve(user.ClientKey), user.ClientKeyData)
	if err != nil {
		return nil, err
	}
	switch {
	case certData != nil && keyData != nil:
		cert, err := tls.X509KeyPair(certData, keyData)
		if err != nil {
			return nil, fmt.Errorf("user %q: client certificate: %w", userName, err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	case certData != nil:
		return nil, fmt.Errorf("user %q: client-certificate without client-key", userName)
	case keyData != nil:
		return nil, fmt.Errorf("user %q: client-key without client-certificate", userName)
	}
	rc.TLS = tlsCfg

	rc.BearerToken = user.Token
	rc.BearerTokenFile = resolve(user.TokenFile)
	if rc.BearerTokenFile != "" && rc.BearerToken == "" {
		// Read now so that a missing file is an error at start, as with client-go.
		if rc.BearerToken, err = readToken(rc.BearerTokenFile); err != nil {
			return nil, fmt.Errorf("user %q: tokenFile: %w", userName, err)
		}
	}
	rc.Username, rc.Password = user.Username, user.Password
	if (rc.Username != "" || rc.Password != "") && rc.BearerToken != "" {
		return nil, fmt.Errorf("user %q: both a token and a username/password; use one", userName)
	}
	return rc, nil
}

// userSupported refuses the ways to authenticate this loader does not implement.
func userSupported(name string, u *kubeconfigUser) error {
	for _, f := range []struct {
		field string
		value any
		why   string
	}{
		{"exec", u.Exec, "exec credential plugins are not supported; use a client certificate, a token or tokenFile (e.g. of a service account)"},
		{"auth-provider", u.AuthProvider, "auth providers are not supported; use a client certificate, a token or tokenFile (e.g. of a service account)"},
		{"as", u.As, "impersonation is not supported"},
		{"as-uid", u.AsUID, "impersonation is not supported"},
		{"as-groups", u.AsGroups, "impersonation is not supported"},
		{"as-user-extra", u.AsUserExtra, "impersonation is not supported"},
	} {
		if f.value != nil && f.value != "" {
			return fmt.Errorf("user %q: unsupported field %s: %s", name, f.field, f.why)
		}
	}
	return nil
}

// fileOrData returns the contents of file, or the base64-decoded data, or nil when both are
// empty; both set is an error (as in client-go: one of them is likely stale). owner and field
// name them in errors.
func fileOrData(owner, field, file, data string) ([]byte, error) {
	switch {
	case file != "" && data != "":
		return nil, fmt.Errorf("%s: both %s and %s-data are set", owner, field, field)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", owner, field, err)
		}
		return b, nil
	case data != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %s-data: %w", owner, field, err)
		}
		return b, nil
	}
	return nil, nil
}

// readToken reads a bearer token file.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return t, nil
}
