// Package writer atomically publishes a pod's TLS key, certificate chain and
// CA bundle into a directory shared with the application (an emptyDir), the
// way the kubelet publishes projected volumes (pkg/volume/util AtomicWriter).
//
// # Layout
//
// With the default names, a published directory looks like this:
//
//	..2026_11_26_22_30_00.123456789/   one generation of files (hidden)
//	    tls.key       PKCS#8 "PRIVATE KEY" PEM                      KeyMode  (0600)
//	    tls.crt       leaf + intermediates, verbatim from the signer CertMode (0644)
//	    ca.crt        CA bundle; only when the caller has one         CertMode (0644)
//	    tls.pem       tls.key followed by tls.crt, in one file        KeyMode  (0600)
//	    keystore.p12  PKCS#12; only when KeystorePassword is set      KeyMode  (0600)
//	..data -> ..2026_11_26_22_30_00.123456789
//	tls.key -> ..data/tls.key    (and so on for every published name)
//
// The timestamped directory is mode 0755: it only has to be traversable, the
// file modes protect the key.
//
// # Publish algorithm
//
// Publish never changes the directory unless the new material is valid, and a
// reader never sees a mix of two generations when it follows the advice in
// "Reading" below:
//
//  1. Parse the material: exactly one private key (ECDSA, RSA or Ed25519;
//     PKCS#8, PKCS#1 or SEC 1), a chain whose PEM blocks are all parseable
//     CERTIFICATE blocks (first = leaf), an optional CA bundle of the same
//     form, and check that the key's public half equals the leaf's. Render
//     every file: tls.key re-encoded as PKCS#8, tls.crt and ca.crt verbatim,
//     tls.pem = tls.key + tls.crt, keystore.p12 if configured. Any problem is
//     an error wrapping ErrInvalid (and ErrMismatch for a key/leaf mismatch);
//     nothing has been touched.
//  2. Read the current ..data target. Name the new generation after the clock,
//     "..2006_01_02_15_04_05.000000000" in UTC, and at least one nanosecond
//     after the current one, so name order is publish order even if the clock
//     steps back (Recover relies on it).
//  3. Create the new hidden directory, write every file with O_EXCL, chmod it
//     to its exact mode (the umask must not decide a key's mode).
//  4. Nothing is fsynced, as in the kubelet's AtomicWriter. The material can
//     always be requested again, and after a power cut the agent runs before
//     the application does (an init container, or a native sidecar whose
//     startup probe gates the app): it finds a torn generation invalid and
//     replaces it. An fsync on a busy node disk, by contrast, can stall every
//     publish for tens to hundreds of milliseconds.
//  5. Read every file back from the new directory and validate it like Load
//     does, byte for byte against what was rendered. On failure remove the new
//     directory and return the error.
//  6. Create the symlink ..data_tmp -> <new directory> and rename it over
//     ..data. rename(2) is atomic: path resolution sees the old or the new
//     generation, never neither.
//  7. Make every published visible name a symlink <name> -> ..data/<name>
//     (created once; recreated, again by an atomic rename, if missing or
//     replaced), and remove visible symlinks of configured names this
//     generation does not have (ca.crt when there is no CA bundle any more).
//  8. Remove every other generation directory: the previous one, and any a
//     killed Publish left behind.
//
// An error from steps 1–5 leaves the directory as it was. An error from step
// 7 or 8 is returned after ..data already points to the new generation; the
// next Publish or Recover completes the work.
//
// Recover (call it once at start-up, before the first Publish) repairs what a
// killed process may have left: it removes ..data_tmp and ..link_tmp, points a
// dangling or missing ..data to the newest complete and valid generation,
// removes every other timestamped directory, and recreates missing visible
// symlinks. It never removes the directory ..data points to, and it touches
// only names this package creates.
//
// # Reading
//
// Readers in the application container should do one of:
//
//   - read tls.pem, which holds the key followed by the chain: one open, one
//     generation, e.g. tls.X509KeyPair(pem, pem) in Go, or a server's
//     "certificate file" and "key file" both set to tls.pem;
//   - resolve ..data once (readlink) and open <dir>/<target>/tls.crt and
//     <dir>/<target>/tls.key: both come from the same generation;
//   - for Java, load keystore.p12.
//
// Opening tls.crt and then tls.key through their visible names can pair two
// generations when a renewal lands in between; a reader doing that must check
// the pair and retry. Any reader may see ENOENT for a moment when it resolved
// ..data just before the previous generation was removed: retry.
//
// # Concurrency
//
// A Writer serialises its own Publish and Recover calls, so it is safe for
// concurrent use, but there must be a single Writer (one process, one
// goroutine owning it in practice) per directory: nothing locks the directory
// against another process. Load and Verify only read and may run at any
// time: Load retries when ..data changes under it, Verify then reports the
// change as drift.
//
// The package does not log; every failure is returned, and no error message
// contains key material.
package writer
