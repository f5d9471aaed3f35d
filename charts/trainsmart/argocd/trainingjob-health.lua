-- Argo CD health check for TrainingJob (trainsmart.dev/v1alpha1). Argo CD runs it with Lua 5.1
-- semantics on the live object `obj` and shows the returned status and message on the resource.
--   Succeeded                 -> Healthy
--   Failed, InvalidSpec=True  -> Degraded
--   Suspended                 -> Suspended
--   Pending, Running, Restarting, or a status not yet written for this generation -> Progressing
-- Messages are the operator's own condition messages (plus progress while training); the operator never
-- writes spec, so these checks are all Argo CD needs (no ignoreDifferences).
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
  hs.message = "Waiting for the trainsmart operator to pick up the job"
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
  hs.message = message_of(status, "Succeeded", "Training succeeded")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message_of(status, "Failed", "Training failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(status, "Suspended", "spec.suspend is true")
elseif phase == "Restarting" then
  hs.status = "Progressing"
  hs.message = message_of(status, "Restarting", "Restarting all replicas")
else
  hs.status = "Progressing"
  hs.message = message_of(status, "Running", phase)
  if phase == "Pending" then
    hs.message = "Pending: " .. hs.message
  end
  local progress = status.progress
  if phase == "Running" and progress ~= nil and progress.totalEpochs ~= nil then
    hs.message = hs.message .. "; epoch " .. tostring(progress.epoch or 0) .. "/" .. tostring(progress.totalEpochs)
    if status.metrics ~= nil and status.metrics.headline ~= nil then
      hs.message = hs.message .. ", " .. status.metrics.headline
    end
  end
end

local warning = condition(status, "TrainingWarning")
if warning ~= nil and warning.status == "True" and phase ~= "Succeeded" and phase ~= "Failed" then
  hs.message = hs.message .. "; warning: " .. (warning.message or warning.reason or "see TrainingWarning")
end
return hs
