// Command releasesign makes a signed wardgate release bundle: a tar holding
// the binary, its COSE_Sign1-signed manifest (version, sha256, os/arch) and
// the signer's public key. `make release` runs it; gateways verify the
// bundle with `wardgate update apply` against update.release_keys.
//
//	releasesign -key release.key -version v1.3.0 -os linux -arch arm/v7 -bin bin/wardgate-linux-arm -out dist/wardgate-v1.3.0-linux-arm-v7.bundle
//
// With -genkey FILE it writes a new P-256 release key (0600) and its public
// key (FILE.pub, PEM) and prints the SPKI SHA-256 to pin.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/wardgate/wardgate/gateway/release"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "releasesign:", err)
		os.Exit(1)
	}
}

func run() error {
	genkey := flag.String("genkey", "", "write a new release key to `FILE` (and FILE.pub) and exit")
	keyPath := flag.String("key", "", "release signing key `FILE` (PEM, EC P-256)")
	ver := flag.String("version", "", "release version, e.g. v1.3.0")
	goos := flag.String("os", "linux", "target OS")
	arch := flag.String("arch", "", "target arch as GOARCH, arm/v7 for GOARM=7")
	bin := flag.String("bin", "", "the binary `FILE`")
	out := flag.String("out", "", "bundle `FILE` to write")
	flag.Parse()
	if *genkey != "" {
		return genKey(*genkey)
	}
	if *keyPath == "" || *ver == "" || *arch == "" || *bin == "" || *out == "" {
		return errors.New("-key, -version, -arch, -bin and -out are required")
	}
	pemData, err := os.ReadFile(*keyPath)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(pemData)
	if block == nil {
		return errors.New("the key file holds no PEM block")
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		pk, err2 := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err2 != nil {
			return fmt.Errorf("parse key: %w", err)
		}
		var ok bool
		if k, ok = pk.(*ecdsa.PrivateKey); !ok {
			return errors.New("the release key must be EC P-256")
		}
	}
	binary, err := os.ReadFile(*bin)
	if err != nil {
		return err
	}
	b, err := release.Sign(k, release.Manifest{Version: *ver, OS: *goos, Arch: *arch}, binary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Println(*out)
	return nil
}

func genKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	h, err := release.SPKIHash(&k.PublicKey)
	if err != nil {
		return err
	}
	fmt.Printf("pin in update.release_keys: sha256:%s (or the file %s.pub)\n", hex.EncodeToString(h[:]), path)
	return nil
}
