-- Argo CD health check for disync.dev/DISyncInstance (argocd-cm key
-- resource.customizations.health.disync.dev_DISyncInstance; argocd-cm-patch.yaml embeds this exact text).
-- Argo CD runs it in gopher-lua (Lua 5.1) without the string and math libraries: only base functions and
-- operators are used here (`..` and tostring, no string methods).
local hs = {}

-- Failures that need a person: they last until the spec, the credentials or the task's live state change (a stop
-- DataWorks refused is tried again, but fails the same way until then), until another resource managing the same
-- task goes (Conflict), or until there is room in the annotations for the start intent (IntentRejected).
local degraded = {
  StartFailed = true,
  InvalidSpec = true,
  InvalidParameter = true,
  AccessDenied = true,
  AuthenticationFailed = true,
  CredentialsUnavailable = true,
  NotRunning = true,
  StopFailed = true,
  Conflict = true,
  IntentRejected = true,
  RestartLimitReached = true,
}
-- Reasons the operator keeps working on (a retry with backoff, a start retried until the clock is right, a deletion
-- under way): Progressing, even if Ready is True.
local transient = {
  Starting = true,
  RetryScheduled = true,
  ClockSkew = true,
  Deleting = true,
  RestartScheduled = true,
}

local function describe(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return tostring(condition.reason) .. ": " .. tostring(condition.message)
  end
  return tostring(condition.reason)
end

-- disync.dev/paused: "true": the operator acts on nothing, so the object keeps the health it had (a spec change is
-- not waited for), and says it is paused.
local paused = obj.metadata.annotations ~= nil and obj.metadata.annotations["disync.dev/paused"] == "true"
local prefix = ""
if paused then
  prefix = "Paused (disync.dev/paused): "
end

local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

if obj.metadata.deletionTimestamp ~= nil then
  -- A stop DataWorks refused keeps the finalizer: that needs a human, not patience. (Argo CD itself, through 3.6.0,
  -- shows any object being deleted as Progressing "Pending deletion" and runs no health check for it.)
  if ready ~= nil and ready.reason == "StopFailed" then
    hs.status = "Degraded"
    hs.message = describe(ready)
    return hs
  end
  hs.status = "Progressing"
  if paused then
    hs.message = "Pending deletion: waiting until disync.dev/paused is removed"
  else
    hs.message = "Pending deletion: stopping the task"
  end
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = prefix .. "Waiting for the operator to start the task"
  return hs
end

-- A condition is only news about the generation it names: after a spec change, the old verdict is stale.
local observed = ready.observedGeneration
if observed == nil and obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if not paused and (observed == nil or observed ~= obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(obj.metadata.generation)
  return hs
end

-- spec.suspend: stopped as asked (Argo CD's own word for it).
if ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = prefix .. describe(ready)
  return hs
end

if degraded[ready.reason] then
  hs.status = "Degraded"
  hs.message = prefix .. describe(ready)
  return hs
end

-- Running, Started, Observed (managementPolicy ObserveOnly, the task runs), Adopted (taken over, it ran).
if ready.status == "True" and not transient[ready.reason] then
  hs.status = "Healthy"
  hs.message = prefix .. describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = prefix .. describe(ready)
return hs
