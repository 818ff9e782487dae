package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/fetch"
	"github.com/rampart-iot/rampart/internal/agent/installer"
	"github.com/rampart-iot/rampart/internal/agent/journal"
	"github.com/rampart-iot/rampart/internal/agent/tufclient"
	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// The update flow, one piece of work at a time:
//
//	check-in answer with work → report downloading → fetch the image (delta if possible; a
//	partial download continues) → report downloaded → [download-only: success]
//	→ [soft: Defer may put it off until InstallBy] → report installing; the answer must not
//	be cancelled or timed-out → Installer.Install (journaled) → Installer.Resume:
//	  A/B-like: report rebooting, Reboot; next start: report verifying, Resume runs the
//	            health check and commits or rolls back → success | rolled-back
//	  file, script: Resume checks and commits → success | rolled-back | failure
//
// Every report carries the state's position in the state order as its sequence number, so
// reports never go backwards across restarts, and the server keeps the furthest state. What
// the agent has done and what the server acknowledged is in State.Update (state.json), the
// install itself in the installer's journal, so the agent can be killed at any point and
// continue: the next Step calls Installer.Resume first.

// Files and directories in the state directory.
const (
	journalFile  = "journal"
	downloadsDir = "downloads"
)

// Work actions (nativeproto.Work.Action); empty means forced.
const (
	actionForced       = "forced"
	actionSoft         = "soft"
	actionDownloadOnly = "download-only"
)

// The states a device reports to a deployment, in order; the server's internal/rollout
// defines them.
const (
	stateDownloading = "downloading"
	stateDownloaded  = "downloaded"
	stateInstalling  = "installing"
	stateRebooting   = "rebooting"
	stateVerifying   = "verifying"
	stateSuccess     = "success"
	stateFailure     = "failure"
	stateRolledBack  = "rolled-back"
	stateCancelled   = "cancelled"
	stateTimedOut    = "timed-out"
)

// Phases of UpdateState.Phase.
const (
	phaseDownloaded = "downloaded"
	phaseInstalling = "installing"
	phaseRebooting  = "rebooting"
)

// maxReportLog bounds the log excerpt sent with a report: the server keeps 8 KiB.
const maxReportLog = 8 << 10

// seqOf is a report's sequence number: its state's position in the state order, so a report
// sent after a restart is never behind one sent before it.
func seqOf(state string) uint64 {
	switch state {
	case stateDownloading:
		return 1
	case stateDownloaded:
		return 2
	case stateInstalling:
		return 3
	case stateRebooting:
		return 4
	case stateVerifying:
		return 5
	case stateSuccess, stateFailure, stateRolledBack, stateCancelled, stateTimedOut:
		return 6
	}
	return 0
}

// terminalState reports whether the server holds a final state for the device.
func terminalState(s string) bool { return seqOf(s) == 6 }

func (a *Agent) crashPoint(p string) {
	if a.failpoint != nil {
		a.failpoint(p)
	}
}

// openJournal opens the installer's journal if it is not open. It stays closed between
// updates, so an idle agent holds no file open.
func (a *Agent) openJournal() error {
	if a.journal != nil {
		return nil
	}
	j, err := journal.Open(filepath.Join(a.opts.StateDir, journalFile))
	if err != nil {
		return err
	}
	a.journal = j
	return nil
}

func (a *Agent) closeJournal() {
	if a.journal != nil {
		a.journal.Close()
		a.journal = nil
	}
}

// updateBusy reports whether the journal holds an update that has not ended.
func (a *Agent) updateBusy() bool {
	if a.journal == nil {
		return false
	}
	last, ok := a.journal.Last()
	if !ok {
		return false
	}
	switch last.Step {
	case installer.StepCommitted, installer.StepRolledBack, installer.StepFailed:
		return false
	}
	return true
}

// resume continues whatever the journal says is in progress and records an outcome that has
// not been reported. rebooting reports that the device was asked to reboot, and that the
// Step should end here.
func (a *Agent) resume(ctx context.Context) (rebooting bool, err error) {
	if !a.resumeDue {
		return false, nil
	}
	if a.journal == nil {
		if _, err := os.Stat(filepath.Join(a.opts.StateDir, journalFile)); errors.Is(err, fs.ErrNotExist) {
			a.resumeDue = false // no update was ever installed
			return false, nil
		}
		if err := a.openJournal(); err != nil {
			return false, fmt.Errorf("resume update: %w", err)
		}
	}
	if u := a.state.Update; u != nil && u.Phase == phaseRebooting && u.Final == "" && seqOf(u.Reported) < seqOf(stateVerifying) {
		if last, ok := a.journal.Last(); ok && last.Step == installer.StepSwitched && last.Deployment == u.Work.ID {
			// Back from the reboot: the health check runs now.
			a.tryReport(ctx, u, stateVerifying)
		}
	}
	r, err := a.opts.Installer.Resume(ctx, a.journal)
	if err != nil {
		return false, fmt.Errorf("resume update: %w", err)
	}
	switch r.Outcome {
	case installer.OutcomeInstalled:
		if r.Reboot {
			return a.rebootInto(ctx, r.Deployment)
		}
	case installer.OutcomeCommitted, installer.OutcomeRolledBack, installer.OutcomeFailed:
		if r.Deployment != "" && r.Deployment != a.state.FinalReported {
			if err := a.recordOutcome(r); err != nil {
				return false, err
			}
		}
		if r.Reboot {
			// Back to the previous software, which needs a reboot: tell the server first
			// while the network may still work.
			if err := a.ensureToken(ctx); err == nil {
				if err := a.deliverOutcome(ctx); err != nil {
					a.log.Warn("report update outcome", "deployment", r.Deployment, "err", err)
				}
			}
			return a.reboot(ctx)
		}
	}
	if !a.updateBusy() && (a.state.Update == nil || a.state.Update.Final == "") {
		a.closeJournal() // nothing in progress, nothing to report
	}
	a.resumeDue = false
	return false, nil
}

// rebootInto reboots into an installed update.
func (a *Agent) rebootInto(ctx context.Context, deployment string) (bool, error) {
	u := a.updateFor(deployment)
	if seqOf(u.Reported) < seqOf(stateRebooting) {
		a.tryReport(ctx, u, stateRebooting)
	}
	if u.Phase != phaseRebooting {
		u.Phase = phaseRebooting
		if err := saveState(a.opts.StateDir, a.state); err != nil {
			return false, err
		}
	}
	a.crashPoint("reboot")
	return a.reboot(ctx)
}

// reboot calls Options.Reboot. Without one, the update waits for a reboot someone else does;
// the agent starts again after it and resumes.
func (a *Agent) reboot(ctx context.Context) (bool, error) {
	if a.opts.Reboot == nil {
		a.log.Warn("the update needs a reboot and no reboot command is configured; reboot the device to continue")
		a.resumeDue = false
		return false, nil
	}
	a.log.Info("rebooting for the update")
	a.resumeDue = true
	if err := a.opts.Reboot(ctx); err != nil {
		return true, fmt.Errorf("reboot: %w", err)
	}
	return true, nil
}

// updateFor returns the update state of deployment, creating it if the state file lost it.
func (a *Agent) updateFor(deployment string) *UpdateState {
	if u := a.state.Update; u != nil && u.Work.ID == deployment {
		return u
	}
	a.state.Update = &UpdateState{Work: nativeproto.Work{ID: deployment, Kind: nativeproto.WorkUpdate}}
	return a.state.Update
}

// recordOutcome keeps the outcome of an ended install until the server acknowledges it.
func (a *Agent) recordOutcome(r installer.Result) error {
	u := a.updateFor(r.Deployment)
	switch r.Outcome {
	case installer.OutcomeCommitted:
		u.Final, u.Log = stateSuccess, ""
		if u.Work.Version != "" {
			a.state.Installed = u.Work.Version
		}
	case installer.OutcomeRolledBack:
		u.Final, u.Log = stateRolledBack, r.Reason
	default:
		u.Final, u.Log = stateFailure, r.Reason
	}
	a.log.Info("update ended", "deployment", r.Deployment, "outcome", u.Final)
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return err
	}
	a.crashPoint("outcome")
	return nil
}

// deliverOutcome reports the recorded outcome of the update, if any, and forgets the update
// once the server has it.
func (a *Agent) deliverOutcome(ctx context.Context) error {
	u := a.state.Update
	if u == nil || u.Final == "" {
		return nil
	}
	if _, err := a.report(ctx, u, u.Final, u.Log); err != nil && !statusIs(err, http.StatusNotFound) {
		return err
	}
	a.state.FinalReported = u.Work.ID
	a.state.Update = nil
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return err
	}
	if a.journal != nil && !a.updateBusy() {
		// The server has the outcome: the journal starts afresh (the old one is kept as
		// journal.prev), so the next start finds nothing to resume or report.
		if last, ok := a.journal.Last(); ok && last.Deployment == u.Work.ID {
			if err := a.journal.Reset(ctx); err != nil {
				a.log.Warn("reset update journal", "err", err)
			}
		}
		a.closeJournal()
	}
	if u.Final != stateSuccess || u.Work.Action != actionDownloadOnly {
		a.removeDownload(u.Work)
	}
	return nil
}

// report sends one status report and returns the state the server holds now.
func (a *Agent) report(ctx context.Context, u *UpdateState, state, log string) (string, error) {
	if len(log) > maxReportLog {
		log = log[len(log)-maxReportLog:]
	}
	body := nativeproto.StatusReport{State: state, Seq: seqOf(state), Log: log}
	p := nativeproto.PathDeployments + url.PathEscape(u.Work.ID) + "/status"
	var ans nativeproto.StatusAnswer
	_, err := a.call(ctx, http.MethodPost, p, body, a.state.Token, &ans)
	if statusIs(err, http.StatusUnauthorized) {
		a.state.Token = ""
		if err := a.ensureToken(ctx); err != nil {
			return "", err
		}
		_, err = a.call(ctx, http.MethodPost, p, body, a.state.Token, &ans)
	}
	if err != nil {
		return "", fmt.Errorf("report %s to %s: %w", state, u.Work.ID, err)
	}
	a.log.Debug("update state reported", "deployment", u.Work.ID, "state", state, "server_state", ans.State)
	a.crashPoint("reported:" + state)
	if seqOf(state) > seqOf(u.Reported) {
		u.Reported = state
		if err := saveState(a.opts.StateDir, a.state); err != nil {
			return ans.State, err
		}
	}
	return ans.State, nil
}

// progressTimeout bounds a progress report: the health check after a reboot must not wait
// long for a network the update may have broken.
const progressTimeout = 10 * time.Second

// tryReport reports a progress state if the server can be reached; progress is worth
// reporting but never worth waiting for.
func (a *Agent) tryReport(ctx context.Context, u *UpdateState, state string) {
	ctx, cancel := context.WithTimeout(ctx, progressTimeout)
	defer cancel()
	if err := a.ensureToken(ctx); err != nil {
		a.log.Debug("update state not reported", "deployment", u.Work.ID, "state", state, "err", err)
		return
	}
	if _, err := a.report(ctx, u, state, ""); err != nil {
		a.log.Debug("update state not reported", "deployment", u.Work.ID, "state", state, "err", err)
	}
}

// takeWork starts or continues the update the server handed out, one at a time.
func (a *Agent) takeWork(ctx context.Context, work []nativeproto.Work) error {
	if a.updateBusy() {
		return nil // Resume continues it
	}
	u := a.state.Update
	if u != nil && u.Final != "" {
		return nil // the outcome waits for the server
	}
	var w *nativeproto.Work
	for i := range work {
		if work[i].Kind == nativeproto.WorkUpdate && u != nil && work[i].ID == u.Work.ID {
			w = &work[i]
		}
	}
	if u != nil && w == nil {
		// The server no longer offers it: cancelled, timed out or ended while the device
		// was away. Nothing of it is installed (the journal is idle).
		a.log.Info("update withdrawn by the server", "deployment", u.Work.ID)
		return a.dropUpdate(u)
	}
	for i := range work {
		if w == nil && work[i].Kind == nativeproto.WorkUpdate && work[i].ID != "" && work[i].ID != a.state.FinalReported {
			w = &work[i]
		}
	}
	if w == nil {
		return nil
	}
	return a.update(ctx, *w)
}

// update carries one piece of work as far as it can go in this Step.
func (a *Agent) update(ctx context.Context, w nativeproto.Work) error {
	u := a.state.Update
	if u == nil || u.Work.ID != w.ID {
		a.log.Info("update offered", "deployment", w.ID, "version", w.Version, "action", w.Action)
		u = &UpdateState{Work: w}
		a.state.Update = u
	} else {
		u.Work = w // grants and deadlines may have been renewed
	}
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return err
	}
	if err := checkWork(w); err != nil {
		return a.endWith(ctx, u, stateFailure, err.Error())
	}
	image := a.imagePath(w)
	if seqOf(u.Reported) < seqOf(stateDownloading) {
		if stop, err := a.stopIf(ctx, u, stateDownloading); stop || err != nil {
			return err
		}
	}
	if u.Phase != "" && !fileExists(image) {
		u.Phase = "" // the staged image is gone: fetch it again
	}
	if u.Phase == "" {
		if err := a.download(ctx, w, image); err != nil {
			if permanent(err) {
				return a.endWith(ctx, u, stateFailure, err.Error())
			}
			return fmt.Errorf("update %s: %w", w.ID, err)
		}
		u.Phase = phaseDownloaded
		if err := saveState(a.opts.StateDir, a.state); err != nil {
			return err
		}
	}
	a.crashPoint("downloaded")
	if seqOf(u.Reported) < seqOf(stateDownloaded) {
		if stop, err := a.stopIf(ctx, u, stateDownloaded); stop || err != nil {
			return err
		}
	}
	switch {
	case w.Action == actionDownloadOnly:
		return a.endWith(ctx, u, stateSuccess, "")
	case w.Action == actionSoft && a.deferSoft(w):
		a.log.Info("soft update deferred", "deployment", w.ID, "install_by", w.InstallBy)
		return nil
	}
	if seqOf(u.Reported) < seqOf(stateInstalling) {
		// The server must know the device installs before it does: a cancellation that
		// reached the server first comes back here, and stops the update.
		if stop, err := a.stopIf(ctx, u, stateInstalling); stop || err != nil {
			return err
		}
	}
	a.crashPoint("installing")
	return a.install(ctx, u, image)
}

// stopIf reports state and says whether the update must stop: the server answered with a
// final state (cancelled, timed out, or ended earlier) or does not know the device in the
// deployment. A stopped update is forgotten and its download deleted.
func (a *Agent) stopIf(ctx context.Context, u *UpdateState, state string) (bool, error) {
	ans, err := a.report(ctx, u, state, "")
	switch {
	case statusIs(err, http.StatusNotFound):
		a.log.Info("device is not in the deployment; update dropped", "deployment", u.Work.ID)
		return true, a.dropUpdate(u)
	case err != nil:
		return false, err
	case terminalState(ans):
		a.log.Info("update stopped by the server", "deployment", u.Work.ID, "state", ans)
		return true, a.dropUpdate(u)
	}
	return false, nil
}

// dropUpdate forgets an update that was not installed and deletes its download.
func (a *Agent) dropUpdate(u *UpdateState) error {
	a.state.Update = nil
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return err
	}
	a.removeDownload(u.Work)
	return nil
}

// endWith ends an update without the installer (download-only, or refused before it began)
// and reports the outcome.
func (a *Agent) endWith(ctx context.Context, u *UpdateState, state, log string) error {
	u.Final, u.Log = state, log
	if state != stateSuccess {
		a.log.Warn("update failed", "deployment", u.Work.ID, "err", log)
	}
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return err
	}
	return a.deliverOutcome(ctx)
}

// deferSoft asks Options.Defer whether to put off a soft update, until its InstallBy.
func (a *Agent) deferSoft(w nativeproto.Work) bool {
	if a.opts.Defer == nil {
		return false
	}
	if !w.InstallBy.IsZero() && !a.opts.Now().Before(w.InstallBy) {
		return false
	}
	return a.opts.Defer(w)
}

// install hands the verified image to the installer, then lets Resume decide what follows.
func (a *Agent) install(ctx context.Context, u *UpdateState, image string) error {
	if err := a.openJournal(); err != nil {
		return fmt.Errorf("install %s: %w", u.Work.ID, err)
	}
	if _, ok := a.journal.Last(); ok && !a.updateBusy() {
		// The journal holds an update that ended; it goes to journal.prev.
		if err := a.journal.Reset(ctx); err != nil {
			return fmt.Errorf("install %s: %w", u.Work.ID, err)
		}
	}
	if u.Phase != phaseInstalling {
		u.Phase = phaseInstalling
		if err := saveState(a.opts.StateDir, a.state); err != nil {
			return err
		}
	}
	a.log.Info("installing update", "deployment", u.Work.ID, "version", u.Work.Version)
	err := a.opts.Installer.Install(ctx, installer.Update{Deployment: u.Work.ID, Image: image, SHA256: u.Work.Artifact.SHA256}, a.journal)
	a.resumeDue = true
	if err != nil {
		last, _ := a.journal.Last()
		switch {
		case ctx.Err() != nil || a.updateBusy():
			return fmt.Errorf("install %s: %w", u.Work.ID, err) // Resume continues it
		case last.Step != installer.StepFailed || last.Deployment != u.Work.ID:
			// Refused before it began: nothing was changed.
			return a.endWith(ctx, u, stateFailure, err.Error())
		}
		// Journaled as failed: Resume reports it with its reason.
	}
	a.crashPoint("installed")
	rebooting, err := a.resume(ctx)
	if err != nil || rebooting {
		return err
	}
	return a.deliverOutcome(ctx)
}

// download fetches the work's image into image, from a delta when the release has one for
// the version the device runs.
func (a *Agent) download(ctx context.Context, w nativeproto.Work, image string) error {
	if err := os.MkdirAll(a.opts.DownloadDir, 0o700); err != nil {
		return fmt.Errorf("download directory: %w", err)
	}
	a.removeOtherDownloads(image)
	c, err := a.updates(grantsFor(w), func() string { return a.state.Token })
	if err != nil {
		// No usable trusted root: nothing can be verified, now or later.
		return fmt.Errorf("%w: %w", errCannotVerify, err)
	}
	req := fetch.Request{FullPath: w.Artifact.Path, Dest: image, SHA256: w.Artifact.SHA256}
	if d := a.pickDelta(w); d != nil {
		if base, size := a.deltaBase(ctx); base != nil {
			defer base.Close()
			req.DeltaPath, req.Installed, req.InstalledSize = d.Path, base, size
		}
	}
	a.log.Info("downloading update", "deployment", w.ID, "target", w.Artifact.Path, "delta", req.DeltaPath != "")
	if _, err := fetch.Image(ctx, c, req, a.log); err != nil {
		return err
	}
	return nil
}

// errCannotVerify: the device holds no usable TUF root.
var errCannotVerify = errors.New("cannot verify updates")

// permanent reports whether a download error will not go away by trying again: the update
// is not what the signed metadata says, or not for this device, or cannot be verified.
func permanent(err error) bool {
	for _, e := range []error{errCannotVerify, tufclient.ErrBadSignature, tufclient.ErrBadVersion, tufclient.ErrMismatch,
		tufclient.ErrTooLarge, tufclient.ErrTargetNotFound, tufclient.ErrWrongDevice} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// pickDelta returns the delta from the version the device runs, if the work has one.
func (a *Agent) pickDelta(w nativeproto.Work) *nativeproto.WorkArtifact {
	cur := a.firmware()
	for i, d := range w.Deltas {
		if cur != "" && d.DeltaFrom == cur && d.Path != "" {
			return &w.Deltas[i]
		}
	}
	return nil
}

// deltaBase opens the image the device runs, if the installer can name it.
func (a *Agent) deltaBase(ctx context.Context) (*os.File, int64) {
	r, ok := a.opts.Installer.(interface {
		Running(ctx context.Context) (string, error)
	})
	if !ok {
		return nil, 0
	}
	p, err := r.Running(ctx)
	if err != nil {
		return nil, 0
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil, 0
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() {
		size = -1 // a partition: the patch names the image size
	}
	return f, size
}

// checkWork refuses work the agent cannot carry out.
func checkWork(w nativeproto.Work) error {
	switch w.Action {
	case "", actionForced, actionSoft, actionDownloadOnly:
	default:
		return fmt.Errorf("unknown update action %.40q", w.Action)
	}
	if w.Artifact == nil || w.Artifact.Path == "" || len(w.Artifact.Path) > 1024 {
		return errors.New("the work names no artifact")
	}
	if !isHexDigest(w.Artifact.SHA256) {
		return fmt.Errorf("artifact sha256 %.80q is not 64 lowercase hex digits", w.Artifact.SHA256)
	}
	return nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// grantsFor returns the grant to send with each TUF target request of w: a target is asked
// for by its hash-prefixed name ("dir/<sha256>.<base>") or by its path.
func grantsFor(w nativeproto.Work) func(string) string {
	type grant struct{ suffix, grant string }
	var gs []grant
	add := func(t nativeproto.WorkArtifact) {
		if t.Path == "" || t.Grant == "" {
			return
		}
		dir, base := path.Split(t.Path)
		gs = append(gs, grant{"/" + dir + t.SHA256 + "." + base, t.Grant}, grant{"/" + t.Path, t.Grant})
	}
	if w.Artifact != nil {
		add(*w.Artifact)
	}
	for _, d := range w.Deltas {
		add(d)
	}
	return func(p string) string {
		for _, g := range gs {
			if strings.HasSuffix(p, g.suffix) {
				return g.grant
			}
		}
		return ""
	}
}

// imagePath is where the work's image is downloaded: named by its digest, so a later update
// of the same target finds it staged.
func (a *Agent) imagePath(w nativeproto.Work) string {
	base := path.Base(w.Artifact.Path)
	safe := []byte(base)
	for i, c := range safe {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			safe[i] = '_'
		}
	}
	if len(safe) > 64 {
		safe = safe[len(safe)-64:]
	}
	return filepath.Join(a.opts.DownloadDir, w.Artifact.SHA256+"-"+string(safe))
}

// removeDownload deletes the image of w and any partial download of it.
func (a *Agent) removeDownload(w nativeproto.Work) {
	if w.Artifact == nil || !isHexDigest(w.Artifact.SHA256) {
		return
	}
	image := a.imagePath(w)
	a.removeDownloads(func(name string) bool {
		return name == filepath.Base(image) || strings.HasPrefix(name, "."+filepath.Base(image)+".")
	})
}

// removeOtherDownloads deletes every download but image and its partial files, so a device
// holds at most one image (a staged download-only image goes when another update comes).
func (a *Agent) removeOtherDownloads(image string) {
	keep := filepath.Base(image)
	a.removeDownloads(func(name string) bool {
		return name != keep && !strings.HasPrefix(name, "."+keep+".")
	})
}

func (a *Agent) removeDownloads(match func(name string) bool) {
	entries, err := os.ReadDir(a.opts.DownloadDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if match(e.Name()) {
			if err := os.RemoveAll(filepath.Join(a.opts.DownloadDir, e.Name())); err != nil {
				a.log.Warn("remove download", "file", e.Name(), "err", err)
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
