// Command containerd-stargz-grpc, as `ferry bench` builds it: the stargz-snapshotter 0.12 library
// (Debian's Go sources, package golang-github-containerd-stargz-snapshotter-dev) served as a
// containerd proxy snapshotter on a unix socket. Written for the benchmark (bench/estargz/build.sh
// builds it); it is not upstream's main. What a user of stargz-snapshotter gets by default is kept:
// the filesystem settings are upstream's defaults unless a TOML file says otherwise (the keys of
// upstream's config.toml top level, e.g. no_background_fetch = true), and registry requests go
// through the same retrying HTTP client upstream uses (30 s per request).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	stargzfs "github.com/containerd/stargz-snapshotter/fs"
	fsconfig "github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	snbase "github.com/containerd/stargz-snapshotter/snapshot"
	rhttp "github.com/hashicorp/go-retryablehttp"
	"github.com/pelletier/go-toml"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

const requestTimeout = 30 * time.Second

type hostList []string

func (h *hostList) String() string     { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error { *h = append(*h, v); return nil }

// readAuth reads "HOST USER:PASSWORD" lines.
func readAuth(path string) (map[string][2]string, error) {
	out := map[string][2]string{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		host, cred, ok := strings.Cut(line, " ")
		user, pass, ok2 := strings.Cut(strings.TrimSpace(cred), ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%s: expected 'HOST USER:PASSWORD'", path)
		}
		out[host] = [2]string{user, pass}
	}
	return out, sc.Err()
}

func registryHosts(plain map[string]bool, auth map[string][2]string) source.RegistryHosts {
	return func(ref reference.Spec) ([]docker.RegistryHost, error) {
		host := ref.Hostname()
		client := rhttp.NewClient()
		client.Logger = nil
		std := client.StandardClient()
		std.Timeout = requestTimeout
		scheme := "https"
		if local, _ := docker.MatchLocalhost(host); local || plain[host] {
			scheme = "http"
		}
		creds := func(h string) (string, string, error) {
			if c, ok := auth[h]; ok {
				return c[0], c[1], nil
			}
			return "", "", nil
		}
		return []docker.RegistryHost{{
			Client:       std,
			Host:         host,
			Scheme:       scheme,
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
			Authorizer:   docker.NewDockerAuthorizer(docker.WithAuthClient(std), docker.WithAuthCreds(creds)),
		}}, nil
	}
}

func run() error {
	address := flag.String("address", "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock", "unix socket serving containerd's snapshots API")
	root := flag.String("root", "/var/lib/containerd-stargz-grpc", "state directory (snapshots, layer cache)")
	configPath := flag.String("config", "", "TOML file with filesystem settings (upstream's top-level keys); upstream defaults when empty")
	authFile := flag.String("auth-file", "", "file of 'HOST USER:PASSWORD' lines for registries that need a login")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	var insecure hostList
	flag.Var(&insecure, "insecure-host", "registry host (host:port) reached over plain HTTP; repeatable")
	flag.Parse()

	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		return err
	}
	logrus.SetLevel(lvl)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	ctx := log.WithLogger(context.Background(), log.L)

	var cfg fsconfig.Config
	if *configPath != "" {
		data, err := os.ReadFile(*configPath)
		if err != nil {
			return err
		}
		if err := toml.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("%s: %w", *configPath, err)
		}
	}
	auth, err := readAuth(*authFile)
	if err != nil {
		return err
	}
	plain := map[string]bool{}
	for _, h := range insecure {
		plain[h] = true
	}
	if err := os.MkdirAll(*root, 0o700); err != nil {
		return err
	}
	hosts := registryHosts(plain, auth)
	fs, err := stargzfs.NewFilesystem(filepath.Join(*root, "stargz"), cfg,
		stargzfs.WithGetSources(source.FromDefaultLabels(hosts)),
		stargzfs.WithOverlayOpaqueType(layer.OverlayOpaqueTrusted))
	if err != nil {
		return fmt.Errorf("stargz filesystem: %w", err)
	}
	sn, err := snbase.NewSnapshotter(ctx, filepath.Join(*root, "snapshotter"), fs, snbase.AsynchronousRemove)
	if err != nil {
		return fmt.Errorf("snapshotter: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(*address), 0o700); err != nil {
		return err
	}
	if err := os.Remove(*address); err != nil && !os.IsNotExist(err) {
		return err
	}
	l, err := net.Listen("unix", *address)
	if err != nil {
		return err
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	errc := make(chan error, 1)
	go func() { errc <- rpc.Serve(l) }()
	log.G(ctx).WithField("address", *address).Info("serving")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.G(ctx).WithField("signal", s.String()).Info("stopping")
	case err := <-errc:
		if err != nil {
			log.G(ctx).WithError(err).Error("grpc server stopped")
		}
	}
	rpc.Stop()
	return sn.Close()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: %v\n", err)
		os.Exit(1)
	}
}
