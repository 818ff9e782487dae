package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/nativeproto"
)

func TestEnrollWithToken(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.enrollToken(t, 1, "acme-gw")

	d := newFakeDevice(t, "SN-1")
	code, res := d.enroll(t, ts, tok)
	if code != 200 || res.Status != "accepted" || res.Token == "" {
		t.Fatalf("enroll with token = %d %+v, want 200 accepted with a token", code, res)
	}
	if code, _ := d.checkIn(t, ts, "1.0.0"); code != 200 {
		t.Fatalf("check-in after token enrollment = %d, want 200", code)
	}
	got := ts.device(t, d.id)
	if got.Status != "accepted" || got.FirmwareVersion != "1.0.0" || len(got.Tags) != 1 || got.Tags[0] != "enrolled-by-token" {
		t.Errorf("device after enrollment = %+v, want accepted, firmware 1.0.0, the token's tag", got)
	}

	// Enrolling again with the same identity and key is idempotent.
	if code, res := d.enroll(t, ts, tok); code != 200 || res.DeviceID != got.ID {
		t.Errorf("re-enroll = %d %+v, want 200 and the same device", code, res)
	}

	// The token had one use: a second device is refused, and nothing is stored.
	before := len(ts.devices(t))
	if code, _ := newFakeDevice(t, "SN-2").enroll(t, ts, tok); code != 401 {
		t.Errorf("enroll with used-up token = %d, want 401", code)
	}
	if code, _ := newFakeDevice(t, "SN-3").enroll(t, ts, "rmpe_not-a-token"); code != 401 {
		t.Errorf("enroll with unknown token = %d, want 401", code)
	}
	wrongType := newFakeDevice(t, "SN-4")
	wrongType.typ = "other-type"
	if code, _ := wrongType.enroll(t, ts, ts.enrollToken(t, 5, "acme-gw")); code != 403 {
		t.Errorf("enroll of another device type = %d, want 403", code)
	}
	if after := len(ts.devices(t)); after != before {
		t.Errorf("refused enrollments stored devices: %d -> %d", before, after)
	}
}

func TestEnrollPreauthorized(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "PRE-1")
	var pre api.Device
	if code := ts.mgmt(t, "POST", "/devices/preauthorize", api.PreauthorizeRequest{Serial: d.serial, DeviceType: d.typ, PublicKey: d.pub()}, &pre); code != 201 {
		t.Fatalf("preauthorize = %d", code)
	}
	if pre.Status != "preauthorized" {
		t.Fatalf("preauthorized device status = %s", pre.Status)
	}
	code, res := d.enroll(t, ts, "")
	if code != 200 || res.Status != "accepted" || res.DeviceID != pre.ID {
		t.Fatalf("enroll of preauthorized device = %d %+v, want 200 accepted as %s", code, res, pre.ID)
	}
	if code, _ := d.checkIn(t, ts, "2.0"); code != 200 {
		t.Errorf("check-in = %d", code)
	}

	// The same identity with another key is an impostor or a clone: refused and flagged.
	impostor := newFakeDevice(t, "PRE-1")
	if code, _ := impostor.enroll(t, ts, ""); code != 409 {
		t.Errorf("enroll with the preauthorized identity and another key = %d, want 409", code)
	}
	if !ts.device(t, pre.ID).CloneSuspect {
		t.Error("device not flagged as a possible clone after its identity came with a second key")
	}
}

func TestEnrollPendingUntilAccepted(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "PEND-1")
	code, res := d.enroll(t, ts, "")
	if code != 202 || res.Status != "pending" || res.Token != "" {
		t.Fatalf("enroll without token = %d %+v, want 202 pending without token", code, res)
	}
	if code, res := d.auth(t, ts); code != 202 || res.Token != "" {
		t.Fatalf("auth while pending = %d %+v, want 202 without token", code, res)
	}
	if code, _ := d.checkIn(t, ts, "1"); code != 401 {
		t.Errorf("check-in without token = %d, want 401", code)
	}
	if code := ts.mgmt(t, "POST", "/devices/"+d.id+"/accept", nil, nil); code != 200 {
		t.Fatalf("accept = %d", code)
	}
	if code, res := d.auth(t, ts); code != 200 || res.Token == "" {
		t.Fatalf("auth after accept = %d %+v, want 200 with token", code, res)
	}
	if code, _ := d.checkIn(t, ts, "1"); code != 200 {
		t.Errorf("check-in after accept = %d, want 200", code)
	}
}

func TestRefusedDevices(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.enrollToken(t, 10, "")
	for _, tc := range []struct {
		action    string
		authCode  int
		enrollErr int
	}{
		{"reject", 403, 403},
		{"decommission", 403, 403},
		{"revoke-key", 403, 403},
	} {
		t.Run(tc.action, func(t *testing.T) {
			d := newFakeDevice(t, "REF-"+tc.action)
			if code, _ := d.enroll(t, ts, tok); code != 200 {
				t.Fatalf("enroll = %d", code)
			}
			if code, _ := d.checkIn(t, ts, "1"); code != 200 {
				t.Fatalf("check-in = %d", code)
			}
			if code := ts.mgmt(t, "POST", "/devices/"+d.id+"/"+tc.action, nil, nil); code != 200 {
				t.Fatalf("%s = %d", tc.action, code)
			}
			if code, _ := d.checkIn(t, ts, "1"); code != 401 {
				t.Errorf("check-in with the old token after %s = %d, want 401", tc.action, code)
			}
			if code, _ := d.auth(t, ts); code != tc.authCode {
				t.Errorf("auth after %s = %d, want %d", tc.action, code, tc.authCode)
			}
			if code, _ := d.enroll(t, ts, tok); code != tc.enrollErr {
				t.Errorf("enroll again after %s = %d, want %d", tc.action, code, tc.enrollErr)
			}
		})
	}
	// A decommissioned device stays refused, even with a fresh key.
	d := newFakeDevice(t, "REF-decommission")
	if code, _ := d.enroll(t, ts, tok); code != 403 {
		t.Errorf("decommissioned identity with a new key = %d, want 403", code)
	}
	// A device whose key was revoked may come back with a new key, but waits for approval.
	d = newFakeDevice(t, "REF-revoke-key")
	if code, res := d.enroll(t, ts, ""); code != 202 || res.Status != "pending" {
		t.Errorf("revoked device with a new key = %d %+v, want 202 pending", code, res)
	}
}

func TestCloneDetection(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.enrollToken(t, 10, "")
	orig := newFakeDevice(t, "CL-1")
	if code, _ := orig.enroll(t, ts, tok); code != 200 {
		t.Fatal("enroll")
	}
	// Same key, another identity: a copied device image with a changed serial.
	copyKey := &fakeDevice{key: orig.key, serial: "CL-2", typ: orig.typ}
	if code, _ := copyKey.enroll(t, ts, tok); code != 409 {
		t.Errorf("same key under another identity = %d, want 409", code)
	}
	if !ts.device(t, orig.id).CloneSuspect {
		t.Error("original not flagged after its key appeared under another identity")
	}
	var evs api.EventList
	ts.mgmt(t, "GET", "/devices/"+orig.id+"/events", nil, &evs)
	found := false
	for _, e := range evs.Events {
		found = found || e.Kind == "clone_suspected"
	}
	if !found {
		t.Errorf("no clone_suspected event in %+v", evs.Events)
	}
	if n := len(ts.devices(t)); n != 1 {
		t.Errorf("clone attempt stored a device: %d devices", n)
	}
}

func TestDeviceCannotTouchAnotherDevice(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.enrollToken(t, 10, "")
	a, b := newFakeDevice(t, "ISO-A"), newFakeDevice(t, "ISO-B")
	a.enroll(t, ts, tok)
	b.enroll(t, ts, tok)

	inv, _ := json.Marshal(nativeproto.Inventory{Hash: "h1", Packages: []nativeproto.Package{{Name: "openssl", Version: "3.0", Source: "dpkg"}}})
	if code, _ := ts.do(t, "PUT", nativeproto.PathInventory, a.token, "application/json", inv); code != 204 {
		t.Fatalf("inventory upload = %d", code)
	}
	if got := ts.device(t, b.id).PackageCount; got != 0 {
		t.Errorf("device A's upload changed device B: %d packages", got)
	}
	// A token re-labelled with B's ID fails its MAC.
	parts := strings.Split(a.token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := append(payload[:16:16], b.id...)
	parts[1] = base64.RawURLEncoding.EncodeToString(forged)
	body, _ := json.Marshal(nativeproto.CheckInRequest{FirmwareVersion: "evil"})
	if code, _ := ts.do(t, "POST", nativeproto.PathCheckIn, strings.Join(parts, "."), "application/json", body); code != 401 {
		t.Errorf("check-in with a forged token = %d, want 401", code)
	}
	if fw := ts.device(t, b.id).FirmwareVersion; fw != "" {
		t.Errorf("forged check-in changed device B: firmware %q", fw)
	}
	// Device tokens do not open the management API, and API tokens do not open the device API.
	if code, _ := ts.do(t, "GET", api.Prefix+"/devices", a.token, "", nil); code != 401 {
		t.Errorf("device token on the management API = %d, want 401", code)
	}
	if code, _ := ts.do(t, "POST", nativeproto.PathCheckIn, ts.admin, "application/json", body); code != 401 {
		t.Errorf("API token on the device API = %d, want 401", code)
	}
}

// TestBadDeviceInput sends what a broken or hostile device might, and checks each gets a
// 4xx with a JSON error and leaves the store as it was.
func TestBadDeviceInput(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.enrollToken(t, 100, "")
	good := newFakeDevice(t, "GOOD-1")
	good.enroll(t, ts, tok)
	snapshot := func() string {
		b, _ := json.Marshal(ts.devices(t))
		return string(b)
	}

	type req struct {
		path, token, ct string
		body            []byte
		headers         []string
	}
	signed := func(body []byte) []string {
		return []string{nativeproto.SignatureHeader, sign(newFakeDevice(t, "x").key, body)}
	}
	d := newFakeDevice(t, "BAD-1")
	validBody := d.enrollBody(t, ts, tok)
	replayBody := d.enrollBody(t, ts, tok)
	// Use the replay body once, for real.
	if code, _ := ts.do(t, "POST", nativeproto.PathEnroll, "", "application/json", replayBody, nativeproto.SignatureHeader, sign(d.key, replayBody)); code != 200 {
		t.Fatalf("first use of the replay body = %d", code)
	}
	before := snapshot()

	cases := map[string]struct {
		r    req
		want int
	}{
		"enroll oversized body":       {req{nativeproto.PathEnroll, "", "application/json", bytes.Repeat([]byte(" "), nativeproto.MaxSmallBody+1), nil}, 413},
		"enroll wrong content type":   {req{nativeproto.PathEnroll, "", "application/x-www-form-urlencoded", validBody, []string{nativeproto.SignatureHeader, sign(d.key, validBody)}}, 415},
		"enroll malformed JSON":       {req{nativeproto.PathEnroll, "", "application/json", []byte(`{"challenge":`), signed([]byte(`{"challenge":`))}, 400},
		"enroll unknown field":        {req{nativeproto.PathEnroll, "", "application/json", []byte(`{"evil":1}`), signed([]byte(`{"evil":1}`))}, 400},
		"enroll trailing data":        {req{nativeproto.PathEnroll, "", "application/json", append(append([]byte{}, validBody...), []byte(`{}`)...), nil}, 401},
		"enroll invalid signature":    {req{nativeproto.PathEnroll, "", "application/json", validBody, signed(validBody)}, 401},
		"enroll signature not base64": {req{nativeproto.PathEnroll, "", "application/json", validBody, []string{nativeproto.SignatureHeader, "%%%"}}, 401},
		"enroll missing signature":    {req{nativeproto.PathEnroll, "", "application/json", validBody, nil}, 401},
		"enroll replayed":             {req{nativeproto.PathEnroll, "", "application/json", replayBody, []string{nativeproto.SignatureHeader, sign(d.key, replayBody)}}, 401},
		"enroll forged challenge": {req{nativeproto.PathEnroll, "", "application/json",
			[]byte(`{"challenge":"c1.AAAA.BBBB","identity":{"serial":"z","device_type":"t"},"public_key":"` + d.pub() + `"}`), nil}, 401},
		"auth unknown device":          {req{nativeproto.PathAuth, "", "application/json", []byte(`{"challenge":"x","device_id":"dev_nope"}`), signed([]byte(`{"challenge":"x","device_id":"dev_nope"}`))}, 401},
		"checkin no token":             {req{nativeproto.PathCheckIn, "", "application/json", []byte(`{}`), nil}, 401},
		"checkin garbage token":        {req{nativeproto.PathCheckIn, "d1.garbage.x", "application/json", []byte(`{}`), nil}, 401},
		"checkin malformed":            {req{nativeproto.PathCheckIn, good.token, "application/json", []byte(`[1,2`), nil}, 400},
		"checkin wrong type":           {req{nativeproto.PathCheckIn, good.token, "text/plain", []byte(`{}`), nil}, 415},
		"checkin oversized":            {req{nativeproto.PathCheckIn, good.token, "application/json", bytes.Repeat([]byte("a"), nativeproto.MaxSmallBody+10), nil}, 413},
		"checkin control chars":        {req{nativeproto.PathCheckIn, good.token, "application/json", []byte(`{"firmware_version":"1\u0000"}`), nil}, 400},
		"checkin too many attributes":  {req{nativeproto.PathCheckIn, good.token, "application/json", manyAttrs(100), nil}, 413},
		"inventory oversized":          {req{nativeproto.PathInventory, good.token, "application/json", bytes.Repeat([]byte(" "), nativeproto.MaxInventoryBody+1), nil}, 413},
		"inventory bad package":        {req{nativeproto.PathInventory, good.token, "application/json", []byte(`{"hash":"h","packages":[{"name":"","version":"1","source":"dpkg"}]}`), nil}, 400},
		"inventory bad source":         {req{nativeproto.PathInventory, good.token, "application/json", []byte(`{"hash":"h","packages":[{"name":"a","version":"1","source":"rpm"}]}`), nil}, 400},
		"events empty":                 {req{nativeproto.PathEvents, good.token, "application/json", []byte(`{"events":[]}`), nil}, 400},
		"events bad level":             {req{nativeproto.PathEvents, good.token, "application/json", []byte(`{"events":[{"kind":"x","level":"panic"}]}`), nil}, 400},
		"rotate without new signature": {req{nativeproto.PathRotateKey, good.token, "application/json", []byte(`{"challenge":"x","new_public_key":"` + d.pub() + `"}`), signed([]byte(`{}`))}, 401},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			method := "POST"
			if tc.r.path == nativeproto.PathInventory {
				method = "PUT"
			}
			code, body := ts.do(t, method, tc.r.path, tc.r.token, tc.r.ct, tc.r.body, tc.r.headers...)
			if code != tc.want {
				t.Errorf("%s = %d %s, want %d", name, code, body, tc.want)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Errorf("bad input changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

func manyAttrs(n int) []byte {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	b, _ := json.Marshal(nativeproto.CheckInRequest{Attributes: m})
	return b
}

// TestReadmissionSpendsTokenUse: a device whose key was revoked comes back with a new key
// and an enrollment token; that admission costs one of the token's uses like a new device.
func TestReadmissionSpendsTokenUse(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "READMIT-1")
	if code, _ := d.enroll(t, ts, ts.enrollToken(t, 1, "")); code != 200 {
		t.Fatal("enroll")
	}
	ts.mgmt(t, "POST", "/devices/"+d.id+"/revoke-key", nil, nil)
	single := ts.enrollToken(t, 1, "")
	again := newFakeDevice(t, "READMIT-1")
	if code, res := again.enroll(t, ts, single); code != 200 || res.Status != "accepted" {
		t.Fatalf("re-admission with a token = %d %+v", code, res)
	}
	ts.mgmt(t, "POST", "/devices/"+d.id+"/revoke-key", nil, nil)
	third := newFakeDevice(t, "READMIT-1")
	if code, res := third.enroll(t, ts, single); code != 202 && code != 401 && code != 409 {
		t.Errorf("second re-admission with the used-up token = %d %+v; want it refused or left pending", code, res)
	}
	if dev := ts.device(t, d.id); dev.Status == "accepted" && !dev.KeyRevoked && dev.KeyFingerprint != "" && third.token != "" {
		t.Errorf("used-up token re-admitted the device: %+v", dev)
	}
}
