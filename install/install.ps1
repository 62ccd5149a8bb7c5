# voltd on Windows: not supported yet. This script says so and, where the
# server has the reference's HTTP lifecycle route (volt-plane; the Gen B VOLT
# server has none), records `operating-system-not-supported` for the cluster
# so the person who started the install sees why nothing connected.
#
#   $env:TEAM_CLUSTER_ENROLLMENT_TOKEN = Read-Host   # or answer the prompt
#   irm https://VOLT/install.ps1 | iex                # then:
#   Install-Voltd -Url https://VOLT -Cluster ID
#
# Or run the file: powershell -File install.ps1 -Url https://VOLT -Cluster ID
# The token is never a parameter (it would show in the process list).
# Exit code 2: platform not supported.
# (Written to be portable; it cannot be run on the machines this project is
# built and tested on.)
param(
    [string]$Url = $env:VOLT_CLOUD_URL,
    [string]$Cluster = $env:TEAM_CLUSTER_ID
)

function Write-Step([string]$Message) { Write-Host "[voltd-install] $Message" }

function Test-AllowedUrl([string]$U) {
    if ($U -match '^https://.+') { return $true }
    return ($U -match '^http://(localhost|127\.[0-9.]+|\[::1\])([:/]|$)')
}

function Invoke-Json([string]$Uri, [string]$Body) {
    # The body (token, password) goes in the request, never on a command line.
    try {
        $r = Invoke-WebRequest -Uri $Uri -Method Post -ContentType 'application/json' -Body $Body -UseBasicParsing
        return @{ Status = [int]$r.StatusCode; Body = $r.Content }
    } catch {
        $resp = $_.Exception.Response
        if ($null -ne $resp) { return @{ Status = [int]$resp.StatusCode; Body = '' } }
        throw
    }
}

function Install-Voltd([string]$Url, [string]$Cluster) {
    Write-Step 'voltd does not run on Windows yet: only Linux hosts can be clusters for now.'
    if (-not $Url -or -not $Cluster) {
        Write-Step 'nothing was reported to the server (no -Url/-Cluster)'
        return 2
    }
    $Url = $Url.TrimEnd('/')
    if (-not (Test-AllowedUrl $Url)) {
        Write-Step "error: refusing $Url`: use https:// (http:// only for loopback)"
        return 1
    }
    if ($Cluster -notmatch '^[A-Za-z0-9_-]+$') {
        Write-Step "error: invalid cluster id $Cluster"
        return 1
    }
    $route = "$Url/api/team-clusters/$Cluster/lifecycle"
    # Probe before spending the single-use token: 404 = no such route.
    $probe = Invoke-Json $route '{}'
    if ($probe.Status -eq 404) {
        Write-Step 'this server has no HTTP status route: it cannot record operating-system-not-supported before a daemon runs; the cluster keeps its status (no token was used)'
        return 2
    }
    $token = $env:TEAM_CLUSTER_ENROLLMENT_TOKEN
    if (-not $token) {
        $secure = Read-Host -AsSecureString "[voltd-install] enrollment token for cluster $Cluster"
        $token = [System.Net.NetworkCredential]::new('', $secure).Password
    }
    $token = $token.Trim()
    if ($token -notmatch '^[A-Za-z0-9_-]+$') {
        Write-Step 'error: no usable enrollment token'
        return 1
    }
    $enroll = Invoke-Json "$Url/api/team-clusters/$Cluster/healthcheck" (@{ enrollmentToken = $token; installedVersion = '1.0.0' } | ConvertTo-Json -Compress)
    if ($enroll.Status -ne 200) {
        Write-Step "error: enrollment refused (HTTP $($enroll.Status))"
        return 1
    }
    $password = ($enroll.Body | ConvertFrom-Json).data.daemonPassword
    $report = Invoke-Json $route (@{ daemonPassword = $password; status = 'operating-system-not-supported' } | ConvertTo-Json -Compress)
    if ($report.Status -eq 200) {
        Write-Step "reported operating-system-not-supported for cluster $Cluster"
    } else {
        Write-Step "the server did not record the status (HTTP $($report.Status))"
    }
    return 2
}

if ($MyInvocation.InvocationName -ne '.' -and $MyInvocation.MyCommand.Path) {
    exit (Install-Voltd -Url $Url -Cluster $Cluster)
}
