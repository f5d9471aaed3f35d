-- Argo CD health check for HyperparamSweep (trainsmart.dev/v1alpha1). Argo CD runs it with Lua 5.1
-- semantics on the live object `obj` and shows the returned status and message on the resource.
--   Succeeded                 -> Healthy   (the message names the best trial)
--   Failed, InvalidSpec=True  -> Degraded
--   Suspended                 -> Suspended
--   Pending, Running, or a status not yet written for this generation -> Progressing (trial counts)
-- The sweep's trials are TrainingJobs it owns; Argo CD shows them under it with their own health.
local hs = {}

local function condition(status, wanted)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function message_of(status, wanted, fallback)
  local c = condition(status, wanted)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the trainsmart operator to pick up the sweep"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local invalid = condition(status, "InvalidSpec")
if invalid ~= nil and invalid.status == "True" then
  hs.status = "Degraded"
  hs.message = "Invalid spec: " .. (invalid.message or "see the InvalidSpec condition")
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message_of(status, "Succeeded", "Sweep succeeded")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message_of(status, "Failed", "Sweep failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(status, "Suspended", "spec.suspend is true")
else
  hs.status = "Progressing"
  hs.message = message_of(status, "Running", phase)
  if phase == "Pending" then
    hs.message = "Pending: " .. hs.message
  end
end
return hs
