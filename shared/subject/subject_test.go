package subject_test

import (
	"fmt"
	"testing"

	"github.com/natter-chat/natter/shared/subject"
)

func TestParseService(t *testing.T) {
	tests := []struct {
		subj, service, endpoint string
		ok                      bool
	}{
		{subject.OfflineStoreMany, "offline", "storemany", true},
		{subject.UserLogin, "user", "login", true},
		{subject.GroupSend, "group", "send", true},
		{subject.User(7), "", "", false},
		{"natter.svc.user", "", "", false},
		{"natter.svc..login", "", "", false},
		{"other.svc.user.login", "", "", false},
	}
	for _, tt := range tests {
		service, endpoint, ok := subject.ParseService(tt.subj)
		if service != tt.service || endpoint != tt.endpoint || ok != tt.ok {
			t.Errorf("ParseService(%q) = %q, %q, %v; want %q, %q, %v", tt.subj, service, endpoint, ok, tt.service, tt.endpoint, tt.ok)
		}
	}
}

func TestParseUser(t *testing.T) {
	if uid, ok := subject.ParseUser(subject.User(42)); !ok || uid != 42 {
		t.Errorf("ParseUser(User(42)) = %d, %v", uid, ok)
	}
	for _, s := range []string{"natter.u.", "natter.u.x", subject.UserLogin} {
		if _, ok := subject.ParseUser(s); ok {
			t.Errorf("ParseUser(%q) ok", s)
		}
	}
}

func ExampleParseService() {
	service, endpoint, ok := subject.ParseService(subject.OfflineStore)
	fmt.Println(service, endpoint, ok)
	// Output: offline store true
}

func ExampleUser() {
	subj := subject.User(42)
	uid, _ := subject.ParseUser(subj)
	fmt.Println(subj, uid)
	// Output: natter.u.42 42
}
