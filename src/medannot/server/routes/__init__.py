"""HTTP routes by area: auth, projects, cases, versions (and drafts, review), jobs, exports."""
