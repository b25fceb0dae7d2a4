package policy

import "github.com/valyala/fastjson"

// findEnv returns the value of name in buf, WASI environ_get's "key=value" strings, each ending with a
// NUL byte; the first entry of name wins, as with getenv.
func findEnv(buf []byte, name string) (string, bool) {
	for len(buf) > 0 {
		end := 0
		for end < len(buf) && buf[end] != 0 {
			end++
		}
		kv := buf[:end]
		if len(kv) > len(name) && kv[len(name)] == '=' && string(kv[:len(name)]) == name {
			return string(kv[len(name)+1:]), true
		}
		if end == len(buf) {
			break
		}
		buf = buf[end+1:]
	}
	return "", false
}

// key resolves the HMAC key: hmac_key_env is read through lookup (none: left unread), exclusive with an
// inline hmac_key, which is accepted with a warning.
func (d *decoder) key(p *Policy, lookup LookupEnv) {
	switch {
	case p.HMACKeyEnv != "" && d.inlineKey:
		d.fail("hmac_key_env", "cannot be combined with \"hmac_key\"")
	case p.HMACKeyEnv != "":
		if k, ok := d.readEnv("hmac_key_env", p.HMACKeyEnv, lookup); ok {
			p.HMACKey = k
		}
	case p.HMACKey != "":
		p.Warnings = append(p.Warnings, InlineKeyWarning)
	}
}

// token resolves the ingest token export.token_env names, read through lookup (none: left unread). It
// must fit an Authorization header as one bearer token: visible ASCII, no spaces. Errors never quote it.
func (d *decoder) token(e *Export, lookup LookupEnv) {
	tok, ok := d.readEnv("export.token_env", e.TokenEnv, lookup)
	if !ok {
		return
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			d.fail("export.token_env", "environment variable \""+e.TokenEnv+"\" holds a character a bearer token "+
				"cannot have (a space, a control character such as a trailing newline, or non-ASCII); the value is not shown")
			return
		}
	}
	e.Token = tok
}

// EnvVar is a Wasm VM environment variable a policy reads at configure time.
type EnvVar struct {
	Name  string // the variable
	Field string // the policy field naming it: hmac_key_env, export.token_env
	What  string // what it holds: "HMAC key", "ingest token"
}

// EnvVars returns the VM environment variables the policy reads (hmac_key_env, export.token_env), in that
// order; a variable named by both fields is listed once per field. Tools rendering the proxy's
// configuration give the VM each of them (Istio: WasmPlugin spec.vmConfig.env).
func (p *Policy) EnvVars() []EnvVar {
	var vs []EnvVar
	if p.HMACKeyEnv != "" {
		vs = append(vs, EnvVar{Name: p.HMACKeyEnv, Field: "hmac_key_env", What: "HMAC key"})
	}
	if p.Export.TokenEnv != "" {
		vs = append(vs, EnvVar{Name: p.Export.TokenEnv, Field: "export.token_env", What: "ingest token"})
	}
	return vs
}

// envName decodes a field naming an environment variable: [A-Za-z_][A-Za-z0-9_]*.
func (d *decoder) envName(v *fastjson.Value, path string) string {
	s := d.nonEmpty(v, path)
	if d.err == nil && !isEnvName(s) {
		d.fail(path, "must be an environment variable name (letters, digits and '_', not starting with a digit)")
	}
	return s
}

// readEnv reads the variable name that the field at path names, through lookup; it fails the field when
// the variable is missing or empty. With a nil lookup nothing is read and ok is false, without an error.
func (d *decoder) readEnv(path, name string, lookup LookupEnv) (value string, ok bool) {
	if lookup == nil {
		return "", false
	}
	v, ok := lookup(name)
	switch {
	case !ok:
		d.fail(path, "environment variable \""+name+"\" is not set in the Wasm VM "+
			"(Envoy: vm_config.environment_variables; Istio WasmPlugin: spec.vmConfig.env)")
	case v == "":
		d.fail(path, "environment variable \""+name+"\" is empty")
	default:
		return v, true
	}
	return "", false
}
