package token

// KeyBytes exposes the derived keys to the external tests.
func KeyBytes(k Keys) (register, run, storage []byte) { return k.register, k.run, k.storage }
