package issue

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestCSRNameOfAPodWithAUIDIsThePrefixAndTheUID(t *testing.T) {
	const uid = "0f4e5b0c-1111-2222-3333-444455556666"
	// The admission policy in manifests/admission computes exactly this
	// from the token's pod-uid: 'csr-agent-' + uid.
	if got := CSRName("shop", "web-0", uid); got != "csr-agent-"+uid {
		t.Errorf("CSRName = %q, want csr-agent-%s", got, uid)
	}
	if a, b := CSRName("shop", "web-0", uid), CSRName("other", "web-1", uid); a != b {
		t.Errorf("the name depends on more than the UID: %q and %q", a, b)
	}
}

func TestCSRNameWithoutAUIDIsStableReadableAndUniquePerPod(t *testing.T) {
	a := CSRName("shop", "web-0", "")
	if again := CSRName("shop", "web-0", ""); again != a {
		t.Errorf("CSRName changed between calls: %q then %q", a, again)
	}
	if !strings.HasPrefix(a, "csr-agent-shop-web-0-") {
		t.Errorf("CSRName = %q, want it to start with csr-agent-shop-web-0-", a)
	}
	for _, other := range [][3]string{
		{"shop", "web-1", ""},      // another pod
		{"shop-web", "0", ""},      // same readable part, other namespace/pod split
		{"other", "web-0", ""},     // another namespace
		{"shop", "WEB-0", ""},      // readable parts collide after lower-casing
		{"shop", "web-0", "uid-1"}, // not a UID the API server writes
	} {
		if got := CSRName(other[0], other[1], other[2]); got == a {
			t.Errorf("CSRName%q = CSRName(shop, web-0, \"\") = %q", other, got)
		}
	}
	if podUIDPattern.MatchString(strings.TrimPrefix(a, PodCSRNamePrefix)) {
		t.Errorf("CSRName = %q takes the form of a pod UID's name", a)
	}
}

func TestCSRNameIsAValidObjectNameForAnyInput(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct{ name, namespace, pod string }{
		{"typical", "default", "web-7d9f8c-x2x4q"},
		{"dotted pod", "shop", "web.0"},
		{"longest namespace and pod", long, strings.Repeat(long+".", 3) + "abc"},
		{"dot cut at the truncation point", "n", strings.Repeat("b", 187) + ".c"},
		{"upper case", "Shop", "WEB"},
		{"unicode", "ünï", "cödé"},
		{"only symbols", "!!!", "@@@"},
		{"empty", "", ""},
		{"consecutive dots", "a", "b..c"},
		{"dot next to dash", "a-", ".b"},
		{"dash next to dot", "a", "b-.-c"},
		{"leading dots", "...", "...x"},
		{"trailing dot and dash", "x", "y.-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CSRName(tc.namespace, tc.pod, "0f4e5b0c-1111-2222-3333-444455556666")
			if msgs := validation.IsDNS1123Subdomain(got); len(msgs) > 0 {
				t.Errorf("CSRName(%q, %q) = %q: %s", tc.namespace, tc.pod, got, strings.Join(msgs, "; "))
			}
		})
	}
}

func FuzzCSRName(f *testing.F) {
	f.Add("default", "web-0", "uid")
	f.Add("a", "b..c", "")
	f.Add("x-", ".-y", "u")
	f.Add(strings.Repeat("n", 300), strings.Repeat("p.", 150), "0")
	f.Add("ÄÖ", "\xff\xfe", "\x00")
	f.Fuzz(func(t *testing.T, namespace, pod, uid string) {
		got := CSRName(namespace, pod, uid)
		if msgs := validation.IsDNS1123Subdomain(got); len(msgs) > 0 {
			t.Fatalf("CSRName(%q, %q, %q) = %q: %s", namespace, pod, uid, got, strings.Join(msgs, "; "))
		}
		if !strings.HasPrefix(got, "csr-agent-") {
			t.Fatalf("CSRName = %q, want prefix csr-agent-", got)
		}
		// Only a real UID gets the name the admission policy reserves for
		// that pod.
		if rest := strings.TrimPrefix(got, PodCSRNamePrefix); podUIDPattern.MatchString(rest) && rest != uid {
			t.Fatalf("CSRName(%q, %q, %q) = %q, the reserved name of another pod", namespace, pod, uid, got)
		}
		if again := CSRName(namespace, pod, uid); again != got {
			t.Fatalf("CSRName not deterministic: %q then %q", got, again)
		}
	})
}
