package policy

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
