// Package upload sends ended vendor session recordings to central's
// archive over HTTPS with the gateway's own mTLS identity: chunked and
// resumable (HEAD asks the stored offset, PUT with Content-Range appends;
// the protocol is documented with central's archive handler), at a bounded
// rate so the clinical path keeps its bandwidth, and keeps central's
// signed receipt. The recording store deletes a recording only once its
// receipt is here (Uploader.Archived is its StoreOptions.Archived).
//
// Run uploads, oldest first, the ended recordings whose session-end event
// central has received (Options.Delivered), one at a time. A failed upload
// is retried at the next round from the offset central has.
//
// Uploader is safe for concurrent use; Run must be called once.
package upload
