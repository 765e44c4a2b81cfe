package oauth2src

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// endpoint is an httptest token endpoint that records each form posted
// and answers with answer.
type endpoint struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	forms  []url.Values
	answer func(form url.Values) (status int, body string)
}

func newEndpoint(t *testing.T, answer func(url.Values) (int, string)) *endpoint {
	e := &endpoint{t: t, answer: answer}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/tenant/token" {
			t.Errorf("request %s %s, want POST /tenant/token", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type %q", ct)
		}
		if _, _, ok := r.BasicAuth(); ok {
			t.Errorf("credentials in an Authorization header; Microsoft wants them in the form")
		}
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		e.mu.Lock()
		e.forms = append(e.forms, r.PostForm)
		e.mu.Unlock()
		status, body := e.answer(r.PostForm)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) url() string { return e.srv.URL + "/tenant/token" }

func (e *endpoint) lastForm() url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.forms) == 0 {
		e.t.Fatal("no request reached the endpoint")
	}
	return e.forms[len(e.forms)-1]
}

func keys(v url.Values) string {
	var k []string
	for name := range v {
		k = append(k, name)
	}
	sort.Strings(k)
	return strings.Join(k, ",")
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const okAnswer = `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi.app-only.sig"}`

// TestMicrosoftClientSecret pins the exact form of the client-credentials
// grant with a client secret.
func TestMicrosoftClientSecret(t *testing.T) {
	e := newEndpoint(t, func(url.Values) (int, string) { return 200, okAnswer })
	m := &Microsoft{Tenant: "contoso.onmicrosoft.com", ClientID: "app-id", ClientSecret: "s3cret~value", TokenURL: e.url()}
	before := time.Now()
	tok, err := m.Token(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "eyJ0eXAi.app-only.sig" || tok.Expiry.Before(before.Add(3590*time.Second)) || tok.Expiry.After(time.Now().Add(3600*time.Second)) {
		t.Errorf("token %q expiring %v", tok.AccessToken, tok.Expiry)
	}
	f := e.lastForm()
	want := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {"app-id"},
		"client_secret": {"s3cret~value"},
		"scope":         {"https://outlook.office365.com/.default"},
	}
	if keys(f) != keys(want) {
		t.Fatalf("form fields %s, want %s", keys(f), keys(want))
	}
	for k, v := range want {
		if f.Get(k) != v[0] || len(f[k]) != 1 {
			t.Errorf("%s = %q, want %q", k, f[k], v)
		}
	}
}

func TestMicrosoftTokenURL(t *testing.T) {
	if got := MicrosoftTokenURL("contoso.onmicrosoft.com"); got != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Errorf("token URL %s", got)
	}
}

// testCert makes an RSA key and a self-signed certificate for it, as
// PEM: certificate first, then the PKCS #8 key.
func testCert(t *testing.T) (*rsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "popmigrate test app"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	return key, der, append(certPEM, keyPEM...)
}

// verifyJWT checks the RS256 signature of jwt with pub and returns its
// header and claims.
func verifyJWT(t *testing.T, jwt string, pub *rsa.PublicKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT has %d parts", len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	for i, into := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

// TestMicrosoftCertificate pins the form of the grant with a client
// assertion (RFC 7523), and the assertion: RS256 signed by the
// certificate's key, x5t the certificate's SHA-1 thumbprint, aud the
// endpoint, iss and sub the client id, a fresh jti, a short life.
func TestMicrosoftCertificate(t *testing.T) {
	key, der, pemBytes := testCert(t)
	e := newEndpoint(t, func(url.Values) (int, string) { return 200, okAnswer })
	m := &Microsoft{Tenant: "t", ClientID: "app-id", CertPEM: pemBytes, TokenURL: e.url()}
	var jtis []any
	for range 2 {
		if _, err := m.Token(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		f := e.lastForm()
		if keys(f) != "client_assertion,client_assertion_type,client_id,grant_type,scope" {
			t.Fatalf("form fields %s", keys(f))
		}
		if f.Get("grant_type") != "client_credentials" || f.Get("client_id") != "app-id" ||
			f.Get("scope") != MicrosoftScope ||
			f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("form %v", f)
		}
		h, c := verifyJWT(t, f.Get("client_assertion"), &key.PublicKey)
		thumb := sha1.Sum(der)
		if h["alg"] != "RS256" || h["typ"] != "JWT" || h["x5t"] != base64.RawURLEncoding.EncodeToString(thumb[:]) || len(h) != 3 {
			t.Errorf("header %v", h)
		}
		now := float64(time.Now().Unix())
		exp, _ := c["exp"].(float64)
		nbf, _ := c["nbf"].(float64)
		if c["aud"] != e.url() || c["iss"] != "app-id" || c["sub"] != "app-id" || c["jti"] == "" ||
			nbf > now || nbf < now-60 || exp < now+60 || exp > now+600 || c["iat"] != c["nbf"] {
			t.Errorf("claims %v", c)
		}
		jtis = append(jtis, c["jti"])
	}
	if jtis[0] == jtis[1] {
		t.Errorf("jti %v used twice", jtis[0])
	}
}

func TestMicrosoftCertificateErrors(t *testing.T) {
	_, _, pemBytes := testCert(t)
	certOnly := pemBytes[:strings.Index(string(pemBytes), "-----BEGIN PRIVATE KEY")]
	for name, m := range map[string]*Microsoft{
		"no key":  {Tenant: "t", ClientID: "c", CertPEM: certOnly, TokenURL: "http://127.0.0.1:1/x"},
		"not PEM": {Tenant: "t", ClientID: "c", CertPEM: []byte("hello"), TokenURL: "http://127.0.0.1:1/x"},
		"both":    {Tenant: "t", ClientID: "c", CertPEM: pemBytes, ClientSecret: "x", TokenURL: "http://127.0.0.1:1/x"},
		"neither": {Tenant: "t", ClientID: "c", TokenURL: "http://127.0.0.1:1/x"},
	} {
		if _, err := m.Token(ctxT(t)); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "-----") || strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: error quotes the PEM: %v", name, err)
		}
	}
}

// TestEndpointErrors: the answer's error code and description, never its
// body; 5xx and no answer are temporary, 4xx is not.
func TestEndpointErrors(t *testing.T) {
	e := newEndpoint(t, func(f url.Values) (int, string) {
		if f.Get("client_secret") == "busy" {
			return 503, `<html>maintenance</html>`
		}
		return 401, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1","trace_id":"1"}`
	})
	m := &Microsoft{Tenant: "t", ClientID: "c", ClientSecret: "wrong", TokenURL: e.url()}
	_, err := m.Token(ctxT(t))
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Status != 401 || ee.Code != "invalid_client" || ee.Temporary() {
		t.Fatalf("err = %#v", err)
	}
	const want = "oauth2: Microsoft identity platform token endpoint: HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided.  Trace ID: 1"
	if err.Error() != want {
		t.Errorf("error\n %s\nwant\n %s", err, want)
	}
	m.ClientSecret = "busy"
	_, err = m.Token(ctxT(t))
	var nerr net.Error
	if !errors.As(err, &ee) || ee.Status != 503 || !ee.Temporary() || !errors.As(err, &nerr) || strings.Contains(err.Error(), "maintenance") {
		t.Errorf("503: %v", err)
	}
	m.TokenURL = "http://127.0.0.1:1/none"
	if _, err = m.Token(ctxT(t)); !errors.As(err, &ee) || ee.Status != 0 || !ee.Temporary() {
		t.Errorf("no answer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.TokenURL = e.url()
	if _, err = m.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// serviceAccountKey returns a Google service account key file whose
// token_uri is tokenURL, and its key.
func serviceAccountKey(t *testing.T, tokenURL string) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "popmigrate-test",
		"private_key_id": "key-id-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})),
		"client_email":   "migrator@popmigrate-test.iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"token_uri":      tokenURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	return key, j
}

// TestGoogleServiceAccount pins the JWT bearer grant: the form
// (grant_type, assertion and nothing else) and the assertion's claims:
// iss the service account, sub the mailbox, scope, aud the endpoint,
// signed with the key of the key file (kid its id).
func TestGoogleServiceAccount(t *testing.T) {
	e := newEndpoint(t, func(url.Values) (int, string) {
		return 200, `{"access_token":"ya29.delegated","expires_in":2,"token_type":"Bearer"}`
	})
	key, j := serviceAccountKey(t, e.url())
	g := &Google{KeyJSON: j, Subject: "alice@example.com"}
	tok, err := g.Token(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "ya29.delegated" || time.Until(tok.Expiry) > 2*time.Second || time.Until(tok.Expiry) < time.Second {
		t.Errorf("token %q expiring in %v", tok.AccessToken, time.Until(tok.Expiry))
	}
	f := e.lastForm()
	if keys(f) != "assertion,grant_type" || f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Fatalf("form %v", keys(f))
	}
	h, c := verifyJWT(t, f.Get("assertion"), &key.PublicKey)
	if h["alg"] != "RS256" || h["kid"] != "key-id-1" {
		t.Errorf("header %v", h)
	}
	if c["iss"] != "migrator@popmigrate-test.iam.gserviceaccount.com" || c["sub"] != "alice@example.com" ||
		c["scope"] != "https://mail.google.com/" || c["aud"] != e.url() {
		t.Errorf("claims %v", c)
	}
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	if exp-iat <= 0 || exp-iat > 3600 {
		t.Errorf("exp - iat = %v", exp-iat)
	}
}

func TestGoogleErrors(t *testing.T) {
	e := newEndpoint(t, func(url.Values) (int, string) {
		return 400, `{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}`
	})
	_, j := serviceAccountKey(t, e.url())
	_, err := (&Google{KeyJSON: j, Subject: "alice@example.com"}).Token(ctxT(t))
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Status != 400 || ee.Code != "unauthorized_client" || !strings.Contains(ee.Description, "not authorized for any of the scopes") {
		t.Fatalf("err = %v", err)
	}
	for name, key := range map[string]string{
		"not JSON":   "hello",
		"user creds": `{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}`,
		"no key":     `{"type":"service_account","client_email":"a@b"}`,
	} {
		_, err := (&Google{KeyJSON: []byte(key), Subject: "a"}).Token(ctxT(t))
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
