# Caddy on the app host (automatic TLS), in front of `web` on 127.0.0.1:4000.
img.example.org {
	request_body {
		max_size 60MB # >= max_upload_mb (default 50)
	}
	reverse_proxy 127.0.0.1:4000 {
		# The app checks access to /uploads/ and answers X-Accel-Redirect; Caddy then
		# streams the file from disk (private images stay behind their signed URLs).
		@accel header X-Accel-Redirect *
		handle_response @accel {
			root * /srv/pixelfox/uploads
			rewrite * {http.reverse_proxy.header.X-Accel-Redirect}
			uri strip_prefix /_pixelfox_files
			header Cache-Control {http.reverse_proxy.header.Cache-Control}
			header X-Content-Type-Options nosniff
			# The app's sandbox CSP must reach the browser: a file is never a document.
			header Content-Security-Policy {http.reverse_proxy.header.Content-Security-Policy}
			file_server
		}
	}
}
