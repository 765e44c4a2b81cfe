package main

// The deployment files (Dockerfile, deploy/kubernetes, deploy/systemd and
// the README's commands) are checked against the real command tree, so
// that a renamed flag or subcommand breaks a test instead of a
// deployment.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// repoRoot is the module's root, seen from this package's directory.
const repoRoot = "../.."

// sampleEnv gives the variables the deployment files use a value each,
// for checking the commands that use them.
var sampleEnv = map[string]string{
	"DATABASE_URL": "postgres://popmigrate@db.example.org/migration",
	"SHARD_INDEX":  "0",
	"SHARD":        "0/4",
}

// checkCommandLine fails the test unless args (without the program name)
// is a popmigrate command line that parses: a runnable subcommand, known
// flags with valid values, the arguments the command's Args accepts (none
// without one), and, for run and journal
// enrol, options that their own checks accept. where names the file. It
// returns the subcommand's path ("popmigrate run") and, for run, its
// options.
func checkCommandLine(t *testing.T, where string, args []string) (string, *runOptions) {
	t.Helper()
	ios := &iostreams{Out: io.Discard, Err: io.Discard}
	root := newRootCmd(ios)
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root || !cmd.Runnable() {
		t.Errorf("%s: popmigrate %s: no such command (%v)", where, strings.Join(args, " "), err)
		return "", nil
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("%s: %s: %v", where, cmd.CommandPath(), err)
		return cmd.CommandPath(), nil
	}
	if cmd.Args != nil {
		if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
			t.Errorf("%s: %s: %v", where, cmd.CommandPath(), err)
		}
	} else if cmd.Flags().NArg() > 0 {
		t.Errorf("%s: %s takes no arguments, got %q", where, cmd.CommandPath(), cmd.Flags().Args())
	}
	switch cmd.CommandPath() {
	case "popmigrate run":
		var o *runOptions
		c := newRunCmd(ios, func(_ context.Context, opts *runOptions) error { o = opts; return nil })
		c.SetArgs(rest)
		c.SetOut(io.Discard)
		c.SetErr(io.Discard)
		if err := c.Execute(); err != nil || o == nil {
			t.Errorf("%s: popmigrate run: %v", where, err)
			return cmd.CommandPath(), nil
		}
		if _, err := o.workFlags.check(&o.accountFlags, "run"); err != nil {
			t.Errorf("%s: popmigrate run: %v", where, err)
		}
		if o.LeaseTTL < minLeaseTTL {
			t.Errorf("%s: popmigrate run: --lease-ttl %v is below %v", where, o.LeaseTTL, minLeaseTTL)
		}
		return cmd.CommandPath(), o
	case "popmigrate journal enrol":
		var o *enrolOptions
		c := newJournalEnrolCmd(ios, func(_ context.Context, opts *enrolOptions) error { o = opts; return nil })
		c.SetArgs(rest)
		c.SetOut(io.Discard)
		c.SetErr(io.Discard)
		if err := c.Execute(); err != nil || o == nil {
			t.Errorf("%s: popmigrate journal enrol: %v", where, err)
		} else if !accountsGiven(&o.accountFlags) {
			t.Errorf("%s: popmigrate journal enrol names no accounts", where)
		}
	}
	return cmd.CommandPath(), nil
}

// expandVars replaces $(VAR) (Kubernetes) or ${VAR} and $VAR (systemd,
// shells) in s with sampleEnv's values; an unknown variable fails the
// test.
func expandVars(t *testing.T, where, s string) string {
	t.Helper()
	return varRE.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "$(){}")
		v, ok := sampleEnv[name]
		if !ok {
			t.Errorf("%s: %s: no sample value for variable %s", where, s, name)
		}
		return v
	})
}

var varRE = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)

// Kubernetes objects, with the fields the manifests may use: decoding
// with known fields only catches a misspelt key.
type (
	k8sObject struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   k8sMeta           `yaml:"metadata"`
		Type       string            `yaml:"type"`
		StringData map[string]string `yaml:"stringData"`
		Data       map[string]string `yaml:"data"`
		Spec       k8sSpec           `yaml:"spec"`
	}
	k8sMeta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	// k8sSpec is a Job's spec or a PersistentVolumeClaim's.
	k8sSpec struct {
		CompletionMode          string `yaml:"completionMode"`
		Completions             *int   `yaml:"completions"`
		Parallelism             *int   `yaml:"parallelism"`
		BackoffLimit            *int   `yaml:"backoffLimit"`
		BackoffLimitPerIndex    *int   `yaml:"backoffLimitPerIndex"`
		MaxFailedIndexes        *int   `yaml:"maxFailedIndexes"`
		TTLSecondsAfterFinished *int   `yaml:"ttlSecondsAfterFinished"`
		ActiveDeadlineSeconds   *int   `yaml:"activeDeadlineSeconds"`
		PodFailurePolicy        *struct {
			Rules []struct {
				Action      string `yaml:"action"`
				OnExitCodes *struct {
					ContainerName string `yaml:"containerName"`
					Operator      string `yaml:"operator"`
					Values        []int  `yaml:"values"`
				} `yaml:"onExitCodes"`
				OnPodConditions []struct {
					Type   string `yaml:"type"`
					Status string `yaml:"status"`
				} `yaml:"onPodConditions"`
			} `yaml:"rules"`
		} `yaml:"podFailurePolicy"`
		Template *struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`

		AccessModes      []string `yaml:"accessModes"`
		StorageClassName string   `yaml:"storageClassName"`
		Resources        *struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
	}
	k8sPodSpec struct {
		RestartPolicy                 string `yaml:"restartPolicy"`
		AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
		EnableServiceLinks            *bool  `yaml:"enableServiceLinks"`
		TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
		HostNetwork                   bool   `yaml:"hostNetwork"`
		ShareProcessNamespace         bool   `yaml:"shareProcessNamespace"`
		SecurityContext               struct {
			RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
			RunAsUser      *int  `yaml:"runAsUser"`
			RunAsGroup     *int  `yaml:"runAsGroup"`
			FSGroup        *int  `yaml:"fsGroup"`
			SeccompProfile struct {
				Type string `yaml:"type"`
			} `yaml:"seccompProfile"`
		} `yaml:"securityContext"`
		InitContainers []k8sContainer `yaml:"initContainers"`
		Containers     []k8sContainer `yaml:"containers"`
		Volumes        []struct {
			Name   string `yaml:"name"`
			Secret *struct {
				SecretName  string `yaml:"secretName"`
				DefaultMode *int   `yaml:"defaultMode"`
			} `yaml:"secret"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			EmptyDir *struct {
				SizeLimit string `yaml:"sizeLimit"`
				Medium    string `yaml:"medium"`
			} `yaml:"emptyDir"`
			PersistentVolumeClaim *struct {
				ClaimName string `yaml:"claimName"`
			} `yaml:"persistentVolumeClaim"`
		} `yaml:"volumes"`
	}
	k8sContainer struct {
		Name            string      `yaml:"name"`
		Image           string      `yaml:"image"`
		ImagePullPolicy string      `yaml:"imagePullPolicy"`
		Command         []string    `yaml:"command"`
		Args            []string    `yaml:"args"`
		Env             []k8sEnvVar `yaml:"env"`
		Ports           []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	k8sEnvVar struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	}
)

// loadManifests decodes every document of every deploy/kubernetes/*.yaml,
// strictly, and returns them by "FILE: KIND NAME".
func loadManifests(t *testing.T) map[string]*k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	out := map[string]*k8sObject{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		for {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", file)
			}
			out[fmt.Sprintf("%s: %s %s", filepath.Base(file), o.Kind, o.Metadata.Name)] = &o
		}
	}
	return out
}

// Every popmigrate command of the Kubernetes manifests parses, and the
// manifests hold together: the worker Job's shards match its completions,
// every Secret, key, claim and volume they name exists, the containers run
// unprivileged on a read-only root, and what popmigrate writes is on a
// writable volume.
func TestDeployKubernetes(t *testing.T) {
	objs := loadManifests(t)
	secrets := map[string]map[string]bool{}
	claims := map[string]bool{}
	for _, o := range objs {
		switch o.Kind {
		case "Secret":
			keys := map[string]bool{}
			for k := range o.StringData {
				keys[k] = true
			}
			for k := range o.Data {
				keys[k] = true
			}
			secrets[o.Metadata.Name] = keys
		case "PersistentVolumeClaim":
			claims[o.Metadata.Name] = true
		}
	}
	commands := 0
	indexed := 0
	for where, o := range objs {
		if o.Kind != "Job" {
			continue
		}
		if o.APIVersion != "batch/v1" || o.Spec.Template == nil {
			t.Errorf("%s: want a batch/v1 Job with a pod template", where)
			continue
		}
		pod := &o.Spec.Template.Spec
		if pod.RestartPolicy != "Never" && pod.RestartPolicy != "OnFailure" {
			t.Errorf("%s: restartPolicy %q", where, pod.RestartPolicy)
		}
		if pod.HostNetwork || pod.ShareProcessNamespace {
			t.Errorf("%s: hostNetwork or shareProcessNamespace: workers would share a host name or pids and could take each other's leases early", where)
		}
		if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.SeccompProfile.Type == "" {
			t.Errorf("%s: the pod must run as a non-root user with a seccomp profile", where)
		}
		volumes := map[string]bool{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = true
			if v.Secret != nil && secrets[v.Secret.SecretName] == nil {
				t.Errorf("%s: volume %s: no Secret %s in the manifests", where, v.Name, v.Secret.SecretName)
			}
			if v.PersistentVolumeClaim != nil && !claims[v.PersistentVolumeClaim.ClaimName] {
				t.Errorf("%s: volume %s: no PersistentVolumeClaim %s in the manifests", where, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			cw := where + ": container " + c.Name
			sc := c.SecurityContext
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				!slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities dropped", cw)
			}
			if c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
				t.Errorf("%s: want a memory limit and a cpu request", cw)
			}
			if len(c.Command) > 0 {
				t.Errorf("%s: command %q replaces the image's ENTRYPOINT (popmigrate as PID 1)", cw, c.Command)
				continue
			}
			env := map[string]string{}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					ref := e.ValueFrom.SecretKeyRef
					if !secrets[ref.Name][ref.Key] {
						t.Errorf("%s: env %s: no key %s in a Secret %s of the manifests", cw, e.Name, ref.Key, ref.Name)
					}
				case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
					env[e.Name] = e.ValueFrom.FieldRef.FieldPath
				}
				if _, ok := sampleEnv[e.Name]; !ok && e.Name != "PGPASSWORD" {
					t.Errorf("%s: env %s is not one the tests know (add it to sampleEnv)", cw, e.Name)
				}
			}
			defined := func(name string) bool {
				return slices.ContainsFunc(c.Env, func(e k8sEnvVar) bool { return e.Name == name })
			}
			writable := []string{}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: volume mount %s: no such volume", cw, m.Name)
				}
				if !m.ReadOnly {
					writable = append(writable, m.MountPath)
				}
			}
			args := make([]string, len(c.Args))
			for i, a := range c.Args {
				for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
					if !defined(m[1]) {
						t.Errorf("%s: argument %q uses $(%s), which the container's env does not define (Kubernetes would pass it as it is)", cw, a, m[1])
					}
				}
				args[i] = expandVars(t, cw, a)
			}
			cmdPath, opts := checkCommandLine(t, cw, args)
			commands++
			if opts == nil {
				continue
			}
			for _, p := range []struct{ flag, path string }{{"--spool-dir", opts.SpoolDir}, {"--quarantine", opts.Quarantine}, {"--report", opts.Report}, {"--html-report", opts.HTMLReport}, {"--trace-dir", opts.TraceDir}} {
				if p.path == "" {
					continue
				}
				if !slices.ContainsFunc(writable, func(dir string) bool {
					return p.path == dir || strings.HasPrefix(p.path, strings.TrimSuffix(dir, "/")+"/")
				}) {
					t.Errorf("%s: %s %s is on the read-only root file system (writable mounts: %v)", cw, p.flag, p.path, writable)
				}
			}
			if o.Spec.CompletionMode != "Indexed" {
				continue
			}
			indexed++
			// An Indexed Job's pods are the shards of one migration.
			// Without --wait: a replacement pod leaves what another
			// pod finished to it and takes over what a dead one left.
			if cmdPath != "popmigrate run" || !opts.FromJournal || opts.Wait {
				t.Errorf("%s: an Indexed Job's pods run popmigrate run --from-journal, without --wait (which would run accounts another pod finished again)", cw)
			}
			if env["SHARD_INDEX"] != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
				t.Errorf("%s: SHARD_INDEX must come from the pod's completion index annotation, is %q", cw, env["SHARD_INDEX"])
			}
			raw := ""
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--shard="); ok {
					raw = v
				}
			}
			sh, err := parseShard(opts.Shard)
			if err != nil || raw != "$(SHARD_INDEX)/"+strconv.Itoa(sh.Count) {
				t.Errorf("%s: want --shard=$(SHARD_INDEX)/COUNT, got %q", cw, raw)
			}
			completions, parallelism := -1, -1
			if o.Spec.Completions != nil && o.Spec.Parallelism != nil {
				completions, parallelism = *o.Spec.Completions, *o.Spec.Parallelism
			}
			if completions != sh.Count || parallelism < 1 || parallelism > sh.Count {
				t.Errorf("%s: completions %d and parallelism %d, but --shard counts %d shards", cw, completions, parallelism, sh.Count)
			}
			if pod.RestartPolicy != "Never" || o.Spec.BackoffLimitPerIndex == nil {
				t.Errorf("%s: want restartPolicy Never and backoffLimitPerIndex: a failed shard is retried by a new pod of its index", where)
			}
		}
	}
	if commands < 2 || indexed != 1 {
		t.Errorf("found %d popmigrate commands and %d Indexed Jobs in deploy/kubernetes, want the enrol Job and one Indexed worker Job", commands, indexed)
	}
}

// systemdUnit is a unit file: its settings by section, in order.
type systemdUnit map[string][][2]string

// parseSystemdUnit parses a unit file: sections, KEY=VALUE lines, lines
// continued with a backslash, comments.
func parseSystemdUnit(t *testing.T, data string) systemdUnit {
	t.Helper()
	u := systemdUnit{}
	section := ""
	var cont strings.Builder
	for n, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		if cont.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";")) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cont.WriteString(s + " ")
			continue
		}
		cont.WriteString(trimmed)
		full := cont.String()
		cont.Reset()
		if strings.HasPrefix(full, "[") && strings.HasSuffix(full, "]") {
			section = full[1 : len(full)-1]
			continue
		}
		k, v, ok := strings.Cut(full, "=")
		if !ok || section == "" {
			t.Fatalf("line %d: %q is neither a section nor KEY=VALUE", n+1, line)
		}
		u[section] = append(u[section], [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return u
}

// get returns the values of key in section.
func (u systemdUnit) get(section, key string) []string {
	var out []string
	for _, kv := range u[section] {
		if kv[0] == key {
			out = append(out, kv[1])
		}
	}
	return out
}

// splitWords splits a command line into words as a POSIX shell or
// systemd would, for the simple lines of our files: blanks separate words,
// '...' and "..." quote, a backslash escapes the next byte. An unquoted
// |, ;, &, <, > or # ends the command (a pipe, a redirection, a comment).
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word is open
		quote byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case strings.IndexByte("|;&<>", c) >= 0 || (c == '#' && !in):
			if (c == '<' || c == '>') && in && strings.Trim(cur.String(), "0123456789") == "" {
				in = false // 2> FILE: the digits name a descriptor
			}
			i = len(s)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// The systemd template unit runs a popmigrate command that parses, with
// the variables its header documents, hardened, restarted on failure with
// a limit, and writing only under its StateDirectory.
func TestDeploySystemd(t *testing.T) {
	file := filepath.Join(repoRoot, "deploy", "systemd", "popmigrate@.service")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := parseSystemdUnit(t, string(data))
	want := map[string]string{
		"Type": "exec", "Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"PrivateTmp": "yes", "ProtectHome": "yes", "User": "popmigrate",
	}
	for k, v := range want {
		if got := u.get("Service", k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: [Service] %s = %q, want %q", file, k, got, v)
		}
	}
	for _, k := range []string{"EnvironmentFile", "StateDirectory", "RestartSec"} {
		if len(u.get("Service", k)) == 0 {
			t.Errorf("%s: no %s", file, k)
		}
	}
	for _, k := range []string{"StartLimitIntervalSec", "StartLimitBurst"} {
		if len(u.get("Unit", k)) == 0 {
			t.Errorf("%s: no [Unit] %s: Restart=on-failure would retry a failing worker forever", file, k)
		}
	}
	state := u.get("Service", "StateDirectory")
	execs := u.get("Service", "ExecStart")
	if len(execs) != 1 || len(state) != 1 {
		t.Fatalf("%s: want one ExecStart and one StateDirectory, have %q and %q", file, execs, state)
	}
	spec := strings.NewReplacer("%i", "isp2026", "%I", "isp2026", "%S", "/var/lib", "%%", "%")
	for _, m := range varRE.FindAllString(execs[0], -1) {
		name := strings.Trim(m, "${}")
		if !strings.Contains(string(data), "#   "+name+"=") {
			t.Errorf("%s: ExecStart uses %s, which the header does not document (#   %s=...)", file, m, name)
		}
	}
	line := expandVars(t, file, spec.Replace(strings.TrimLeft(execs[0], "-@:+!")))
	words, err := splitWords(line)
	if err != nil || len(words) < 2 {
		t.Fatalf("%s: ExecStart %q: %v", file, execs[0], err)
	}
	if !path.IsAbs(words[0]) || path.Base(words[0]) != "popmigrate" {
		t.Errorf("%s: ExecStart runs %s, want an absolute path to popmigrate", file, words[0])
	}
	cmdPath, opts := checkCommandLine(t, file, words[1:])
	if cmdPath != "popmigrate run" || opts == nil || !opts.FromJournal || opts.Wait {
		t.Fatalf("%s: want popmigrate run --from-journal without --wait, got %s", file, cmdPath)
	}
	// ProtectSystem=strict: only the StateDirectory and PrivateTmp's /tmp
	// are writable.
	stateDir := "/var/lib/" + spec.Replace(state[0])
	for _, p := range []struct{ flag, path string }{{"--quarantine", opts.Quarantine}, {"--spool-dir", opts.SpoolDir}, {"--report", opts.Report}, {"--trace-dir", opts.TraceDir}} {
		if p.path != "" && !strings.HasPrefix(p.path, stateDir+"/") && !strings.HasPrefix(p.path, "/tmp/") && p.path != "/tmp" {
			t.Errorf("%s: %s %s is outside the StateDirectory %s: read-only under ProtectSystem=strict", file, p.flag, p.path, stateDir)
		}
	}
	if opts.Quarantine == "" {
		t.Errorf("%s: no --quarantine: its default, beside a PostgreSQL journal, is the working directory", file)
	}
}

// readmeCommands returns every popmigrate command line in the sh code
// blocks of the markdown file, with lines continued by a backslash joined.
func readmeCommands(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out    []string
		inSh   bool
		joined strings.Builder
	)
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inSh = !inSh && (line == "```sh" || line == "```bash")
			continue
		case !inSh:
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " "), "\\"); ok {
			joined.WriteString(s)
			continue
		}
		joined.WriteString(line)
		full := strings.TrimSpace(joined.String())
		joined.Reset()
		if strings.HasPrefix(full, "popmigrate ") {
			out = append(out, full)
		}
	}
	return out
}

// Every popmigrate command of the README parses against the real command
// tree: a flag renamed in the code and not in the README fails here.
func TestReadmeCommandsParse(t *testing.T) {
	file := filepath.Join(repoRoot, "README.md")
	cmds := readmeCommands(t, file)
	if len(cmds) < 20 {
		t.Fatalf("%s: found only %d popmigrate commands", file, len(cmds))
	}
	for _, c := range cmds {
		words, err := splitWords(c)
		if err != nil {
			t.Errorf("%s: %q: %v", file, c, err)
			continue
		}
		for i, w := range words {
			words[i] = expandVars(t, file+": "+c, w)
		}
		checkCommandLine(t, file+": "+c, words[1:])
	}
}

// The README's section on scaling out names every deployment file.
func TestReadmeNamesTheDeployFiles(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if !bytes.Contains(readme, []byte(filepath.ToSlash(rel))) {
			t.Errorf("README.md does not name %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The Dockerfile builds with the Go of go.mod, with cgo (the SQLite
// driver), on the Debian release it runs on, and runs popmigrate as an
// unprivileged PID 1; .dockerignore keeps what the build needs.
func TestDockerfile(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)\s*$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	goVersion := string(m[1])
	if tc := regexp.MustCompile(`(?m)^toolchain go(\S+)\s*$`).FindSubmatch(gomod); tc != nil {
		goVersion = string(tc[1])
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Instructions, with continued lines joined and comments dropped.
	var instr [][2]string
	var cont strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if trim := strings.TrimSpace(line); cont.Len() == 0 && (trim == "" || strings.HasPrefix(trim, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " "), "\\"); ok {
			cont.WriteString(s)
			continue
		}
		cont.WriteString(line)
		op, rest, _ := strings.Cut(strings.TrimSpace(cont.String()), " ")
		cont.Reset()
		instr = append(instr, [2]string{strings.ToUpper(op), strings.TrimSpace(rest)})
	}
	args := map[string]string{}
	var stages []string // the image of each FROM, ARGs expanded
	var final [][2]string
	cgo := false
	for _, in := range instr {
		switch in[0] {
		case "ARG":
			if k, v, ok := strings.Cut(in[1], "="); ok && len(stages) == 0 {
				args[k] = v
			}
		case "FROM":
			image := strings.Fields(in[1])[0]
			image = regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(image, func(s string) string { return args[s[2:len(s)-1]] })
			stages = append(stages, image)
			final = nil
		case "RUN":
			if len(stages) == 1 && strings.Contains(in[1], "CGO_ENABLED=1") && strings.Contains(in[1], "go build") {
				cgo = true
			}
		}
		final = append(final, in)
	}
	if len(stages) != 2 {
		t.Fatalf("Dockerfile: %d stages (%q), want a builder and a runtime", len(stages), stages)
	}
	builder := regexp.MustCompile(`^golang:(\d+\.\d+(?:\.\d+)?)-(\w+)$`).FindStringSubmatch(stages[0])
	if builder == nil {
		t.Fatalf("Dockerfile: builder image %q, want golang:VERSION-DEBIAN", stages[0])
	}
	if builder[1] != goVersion {
		t.Errorf("Dockerfile: builds with Go %s, go.mod says %s", builder[1], goVersion)
	}
	if want := "debian:" + builder[2] + "-slim"; stages[1] != want {
		t.Errorf("Dockerfile: runtime image %q, want %q: the cgo binary needs the builder's glibc", stages[1], want)
	}
	if !cgo {
		t.Error("Dockerfile: the builder does not go build with CGO_ENABLED=1 (github.com/mattn/go-sqlite3 needs cgo)")
	}
	var user, entrypoint, copied string
	for _, in := range final {
		switch in[0] {
		case "USER":
			user = in[1]
		case "ENTRYPOINT":
			entrypoint = in[1]
		case "COPY":
			if f := strings.Fields(in[1]); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				copied = f[2]
			}
		case "RUN":
			if strings.Contains(in[1], "apt-get install") && !strings.Contains(in[1], "ca-certificates") {
				t.Errorf("Dockerfile: the runtime installs no ca-certificates: %s", in[1])
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("Dockerfile: the runtime runs as %q, want an unprivileged user", user)
	}
	if entrypoint != `["`+copied+`"]` || path.Base(copied) != "popmigrate" {
		t.Errorf("Dockerfile: ENTRYPOINT %s, want the exec form of the copied binary %s", entrypoint, copied)
	}

	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum", "cmd/popmigrate/main.go", "report/report.html.tmpl", "journal/schema.go"}
	for _, line := range strings.Split(string(ignore), "\n") {
		pat := strings.TrimSpace(line)
		if pat == "" || strings.HasPrefix(pat, "#") || strings.HasPrefix(pat, "!") {
			continue
		}
		for _, f := range needed {
			if ignored(pat, f) {
				t.Errorf(".dockerignore: %q leaves %s out of the build", pat, f)
			}
		}
	}
	if !strings.Contains(string(ignore), ".git") {
		t.Error(".dockerignore does not leave out .git")
	}
}

// ignored reports whether the .dockerignore pattern pat matches file or a
// folder above it ("**/" matches any folders).
func ignored(pat, file string) bool {
	parts := strings.Split(file, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := path.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
